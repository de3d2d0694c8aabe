# arena: `make help` lists the targets. Every target creates or reuses .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
export WANDB_MODE ?= offline
OUT ?= logs/pipeline-smoke

.DEFAULT_GOAL := help
.PHONY: help install train test test-unit test-all lint format bench gpu-wheels pipeline-smoke clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,demo,sweep]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install arena with its dev, demo and sweep extras

train: $(STAMP) ## run the main job: python -m arena.train (the CPU quickstart); ARGS= adds overrides
	$(PY) -m arena.train $(ARGS)

test: $(STAMP) ## run the unit and integration tiers (CPU; not the slow and gpu ones), one worker per core
	OMP_NUM_THREADS=1 $(PY) -m pytest -n auto -m "not slow and not gpu" $(ARGS)

test-unit: $(STAMP) ## run the unit tier only (tests/unit: one library package each, fast)
	$(PY) -m pytest tests/unit -m "not slow and not gpu" $(ARGS)

test-all: $(STAMP) ## run every tier: slow quality regressions too (gpu tests skip without CUDA)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP) ## ruff lint + format check, mypy
	$(PY) -m ruff check arena tests notebooks && $(PY) -m ruff format --check arena tests notebooks && $(PY) -m mypy

format: $(STAMP) ## apply ruff fixes and formatting
	$(PY) -m ruff check --fix arena tests notebooks && $(PY) -m ruff format arena tests notebooks

bench: $(STAMP) ## run the benchmark suite (python -m arena.bench)
	$(PY) -m arena.bench $(ARGS)

gpu-wheels: ## download into .wheels/ what a bare GPU machine lacks for bash .ci/gpu (docs/results/gpu-bench.md)
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_24_x86_64 -d .wheels bitsandbytes==0.50.2 transformers==5.23.0 peft==0.21.2 hydra-core==1.3.8 omegaconf==2.3.1 && $(PYTHON) -m pip wheel -q --no-deps -w .wheels antlr4-python3-runtime==4.9.3

pipeline-smoke: $(STAMP) ## LMSYS 1st place pipeline on tiny CPU models (post-pretraining, teachers, student and its CE-only control, merge, 8-bit; ~8 min): OUT=<dir>
	$(PY) -m arena.pipeline output_dir=$(OUT) $(ARGS)

clean: ## remove caches, logs and build outputs (keeps .venv)
	rm -rf .cache logs outputs multirun .pytest_cache .ruff_cache .mypy_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
