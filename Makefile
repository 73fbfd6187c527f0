# Quick start: `make demo` (train VAPO on 8gaussians, sample, plot) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
WEIGHTS ?= $(JAXGEN_INCEPTION_WEIGHTS)

.PHONY: demo test test-fast bench eval lint format clean

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/activate

demo: $(BIN)/activate
	$(BIN)/python -m experiments.demo --workdir $(WORKDIR)

test: $(BIN)/activate
	$(BIN)/python -m pytest -q tests

test-fast: $(BIN)/activate
	$(BIN)/python -m pytest -q -m "not slow" tests

# make eval CONFIG=experiments/configs/vapo/cifar10.py WORKDIR=runs/vapo_cifar10 [WEIGHTS=inception.npz]
eval: $(BIN)/activate
	JAXGEN_INCEPTION_WEIGHTS=$(WEIGHTS) $(BIN)/python -m experiments.evaluate --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

bench: $(BIN)/activate
	$(BIN)/python -m benchmarks.step_throughput
	$(BIN)/python -m benchmarks.vapo_toy2d --out

lint: $(BIN)/activate
	$(BIN)/ruff check jaxgen experiments benchmarks tests
	$(BIN)/ruff format --check jaxgen experiments benchmarks tests

format: $(BIN)/activate
	$(BIN)/ruff format jaxgen experiments benchmarks tests
	$(BIN)/ruff check --fix jaxgen experiments benchmarks tests

clean:
	rm -rf $(VENV) runs
