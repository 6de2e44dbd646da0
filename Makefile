# Two commands (see README): `make quickstart` and `make test`. Both create .venv and install.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv assets quickstart zoo test lint format clean

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

# The shipped zoo models, retrained from their committed configs (hours on 2 CPU cores; each
# pipeline resumes where it stopped), then shipped into textboost/zoo/weights with their cards.
zoo: venv assets
	$(VENV)/bin/textboost pipeline configs/zoo/hp-mid.yaml
	$(VENV)/bin/textboost pipeline configs/zoo/hp-low.yaml
	$(VENV)/bin/textboost pipeline configs/zoo/hp-high.yaml
	$(PY) -m jobs.zoo_ship configs/zoo/hp-mid.yaml hp-mid --overwrite
	$(PY) -m jobs.zoo_ship configs/zoo/hp-low.yaml hp-low --base configs/zoo/hp-mid.yaml --overwrite
	$(PY) -m jobs.zoo_ship configs/zoo/hp-high.yaml hp-high --base configs/zoo/hp-mid.yaml --overwrite
	# hp-xlow starts from the shipped hp-low, so it runs after hp-low is shipped
	$(VENV)/bin/textboost pipeline configs/zoo/hp-xlow.yaml
	$(PY) -m jobs.zoo_ship configs/zoo/hp-xlow.yaml hp-xlow --overwrite

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
