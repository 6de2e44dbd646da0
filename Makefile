# Two commands (see README): `make quickstart` and `make test`. Both create .venv and install.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv assets quickstart test lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test,dev]"
	touch $@

venv: $(VENV)/.installed

# Photos and fonts for training and validation (Debian packages + wheels, see textboost/assets.py)
assets/.complete: $(VENV)/.installed textboost/assets.py
	$(PY) -m textboost.assets

assets: assets/.complete

quickstart: venv assets
	$(VENV)/bin/textboost pipeline configs/quickstart.yaml

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
