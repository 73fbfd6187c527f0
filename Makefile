# Quick start: `make demo` (train VAPO on 8gaussians, sample, plot) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
WEIGHTS ?= $(JAXGEN_INCEPTION_WEIGHTS)

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-fast data bench eval lint format clean

# The tested versions (constraints.txt) within pyproject.toml's ranges.
$(BIN)/activate: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(BIN)/activate

# Fashion-MNIST for the data tests: the Debian package dataset-fashion-mnist, installed when it is
# missing and this runs as root with apt-get. Never fails the build (without the files those tests
# skip with their reason) unless DATA_REQUIRED=1, which .ci/run sets.
data:
	@if [ -n "$$JAXGEN_DATA_DIR" ] || [ -f $(FASHION_MNIST) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing dataset-fashion-mnist (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null && exit 0; \
	  echo "could not install dataset-fashion-mnist"; \
	else echo "dataset-fashion-mnist is not installed (installing it needs root and apt-get)"; fi; \
	if [ -n "$(DATA_REQUIRED)" ]; then exit 1; fi; \
	echo "the Fashion-MNIST tests will skip"

demo: $(BIN)/activate
	$(BIN)/python -m experiments.demo --workdir $(WORKDIR)

# the suite runs on TEST_WORKERS processes (pytest-xdist; 2 for the 2-core CI machine, whose
# compile-bound tests leave a core idle in one process); TEST_WORKERS=0 runs it in this process
TEST_WORKERS ?= 2
test: $(BIN)/activate data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

test-fast: $(BIN)/activate data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow" tests

# make eval CONFIG=experiments/configs/vapo/cifar10.py WORKDIR=runs/vapo_cifar10 [WEIGHTS=inception.npz]
eval: $(BIN)/activate
	JAXGEN_INCEPTION_WEIGHTS=$(WEIGHTS) $(BIN)/python -m experiments.evaluate --config $(CONFIG) --workdir $(WORKDIR) $(ARGS)

bench: $(BIN)/activate
	$(BIN)/python -m benchmarks.step_throughput
	$(BIN)/python -m benchmarks.vapo_toy2d --out

lint: $(BIN)/activate
	$(BIN)/ruff check jaxgen experiments benchmarks tools tests
	$(BIN)/ruff format --check jaxgen experiments benchmarks tools tests

format: $(BIN)/activate
	$(BIN)/ruff format jaxgen experiments benchmarks tools tests
	$(BIN)/ruff check --fix jaxgen experiments benchmarks tools tests

clean:
	rm -rf $(VENV) runs
