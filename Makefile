# reidjax: the two set-up commands of the README, plus helpers.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
export XLA_FLAGS ?= --xla_force_host_platform_device_count=8

# PyTorch for the tests only, as its CPU build: a local wheel or index that has it first
# (no request to any other host), else PyTorch's own CPU index.
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install install-dev demo test test-fast coverage lint format bench

# The pinned requirements, then reidjax itself (editable): `import reidjax` works from
# any folder, and `python -m input_pipeline` / `reidjax-search` from anywhere.
install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .

install-dev: install
	$(PIP) install -q -r requirements-dev.txt
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH)" 2>/dev/null \
		|| $(PIP) install -q "$(TORCH)" --extra-index-url $(TORCH_INDEX)

# The main job on the built-in default (CPU, no dataset or weights needed).
demo: install
	$(PYTHON) train.py --config configs/synthetic.py --workdir runs/demo

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

# The full suite: what CI and the README run. Two workers: most of the time is
# single-threaded XLA compilation. Each worker takes one test at a time, the longest first
# (tests/conftest.py), so that both end together. The 25 slowest tests are listed at the end.
test: install-dev lint
	$(PYTHON) -m pytest -n 2 --maxschedchunk 1 --durations=25

# The inner loop: everything but the trained runs and real processes (marked slow).
test-fast: lint
	$(PYTHON) -m pytest -n 2 --maxschedchunk 1 -m "not slow"

# Line coverage of reidjax over the full suite, the train.py/eval.py/tool processes the
# tests start included (settings in pyproject.toml).
coverage: install-dev
	$(PYTHON) -m coverage erase
	$(PYTHON) -m coverage run -m pytest -n 2 --maxschedchunk 1 -q
	$(PYTHON) -m coverage combine  # its last line counts files lost by killed processes
	$(PYTHON) -m coverage report

bench: install-dev
	$(PYTHON) bench/backbone_step.py
