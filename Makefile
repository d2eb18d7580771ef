# reidjax: the two set-up commands of the README, plus helpers.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8

.PHONY: install install-dev demo test test-fast lint format bench

install:
	$(PIP) install -q -r requirements.txt

install-dev:
	$(PIP) install -q -r requirements-dev.txt

# The main job on the built-in default (CPU, no dataset or weights needed).
demo: install
	$(PYTHON) train.py --config configs/synthetic.py --workdir runs/demo

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

# The full suite: what CI and the README run.
test: install-dev lint
	$(PYTHON) -m pytest -n 2  # two workers: most of the time is single-threaded XLA compilation

# The inner loop: everything but the compile-heavy end-to-end tests (marked slow).
test-fast: lint
	$(PYTHON) -m pytest -n 2 -m "not slow"

bench: install-dev
	$(PYTHON) bench/backbone_step.py
