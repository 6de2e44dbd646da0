# Two commands (see README): `make quickstart` and `make test`. Both create .venv and install.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv assets quickstart zoo comparisons compare test lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,dev]"
	touch $@

venv: $(VENV)/.installed

# Photos and fonts for training and validation (Debian packages + wheels, see textboost/data/assets.py)
assets/.complete: $(VENV)/.installed textboost/data/assets.py
	$(PY) -m textboost.data.assets

assets: assets/.complete

quickstart: venv assets
	$(VENV)/bin/textboost pipeline configs/quickstart.yaml

# The shipped zoo models (three rate points in the paper's ultra-low range), retrained from
# their committed configs (hours on 2 CPU cores; each pipeline resumes where it stopped), then
# shipped into textboost/zoo/weights with their cards. hp-mid is the stage-1 base of them all;
# it and hp-high (higher rates, where the backbone already reads most words) are shipped into
# models/higher-rate, outside the package.
zoo: venv assets
	$(VENV)/bin/textboost pipeline configs/zoo/hp-mid.yaml
	$(VENV)/bin/textboost pipeline configs/zoo/hp-low.yaml
	$(VENV)/bin/textboost pipeline configs/zoo/hp-high.yaml
	$(PY) -m jobs.zoo_ship configs/zoo/hp-mid.yaml hp-mid --out-dir models/higher-rate --overwrite
	$(PY) -m jobs.zoo_ship configs/zoo/hp-high.yaml hp-high --base configs/zoo/hp-mid.yaml --out-dir models/higher-rate --overwrite
	$(PY) -m jobs.zoo_ship configs/zoo/hp-low.yaml hp-low --base configs/zoo/hp-mid.yaml --overwrite
	# hp-xlow starts from the shipped hp-low, hp-xxlow from the shipped hp-xlow
	$(VENV)/bin/textboost pipeline configs/zoo/hp-xlow.yaml
	$(PY) -m jobs.zoo_ship configs/zoo/hp-xlow.yaml hp-xlow --overwrite
	$(VENV)/bin/textboost pipeline configs/zoo/hp-xxlow.yaml
	$(PY) -m jobs.zoo_ship configs/zoo/hp-xxlow.yaml hp-xxlow --overwrite

# The paper's comparison models (ROI, TACO-style, LIC-TCM + TextBoost-TCM), each trained and
# registered by its own pipeline (ROI / TACO-style start from the shipped hp-low; tcm-low
# fine-tunes tcm-xlow's stage 1), then shipped with their cards into models/comparisons
# (fp16, outside the package: `TEXTBOOST_ZOO_DIR=models/comparisons textboost zoo list`)
COMPARISONS := roi-xlow roi-low taco-xlow taco-low tcm-xlow tcm-low
comparisons: venv assets
	for m in $(COMPARISONS); do $(VENV)/bin/textboost pipeline configs/zoo/$$m.yaml || exit 1; done
	for m in $(filter-out tcm-low,$(COMPARISONS)); do \
	  $(PY) -m jobs.zoo_ship configs/zoo/$$m.yaml $$m --out-dir models/comparisons --overwrite || exit 1; done
	$(PY) -m jobs.zoo_ship configs/zoo/tcm-low.yaml tcm-low --base configs/zoo/tcm-xlow.yaml --out-dir models/comparisons --overwrite

# One evaluation over all of them and the AVIF baselines: one table, one set of RD curves
# (runs/zoo-joint/eval), then the same models on text-free photos. The TextBoost models (zoo
# and TextBoost-TCM) send what the encoder's legibility check picks from every word (the zoo
# cards' select: legible, T = 1e9); ROI and TACO-style read the words under their T.
CMP := models/comparisons
COMPARE_MODELS := zoo:hp-xxlow,zoo:hp-xlow,zoo:hp-low,$(CMP)/tcm-xlow.pt@1e9,$(CMP)/tcm-low.pt@1e9,$(CMP)/roi-xlow.pt@1400,$(CMP)/roi-low.pt@2000,$(CMP)/taco-xlow.pt@1400,$(CMP)/taco-low.pt@2000
compare: venv assets
	$(PY) -m jobs.bench_zoo --models $(COMPARE_MODELS) --limit 40 --workdir runs/zoo-joint "eval.baselines=[backbone,overlay,avif_min,avif_half]" eval.workers=2
	$(PY) -m jobs.bench_zoo --config configs/zoo/textfree.yaml --models $(COMPARE_MODELS) --workdir runs/zoo-textfree-joint "eval.baselines=[backbone,avif]" eval.workers=2

test: venv
	$(VENV)/bin/pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs
