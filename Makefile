# Quickstart: `make run` (main job) and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Main job: the MMoE paper's synthetic experiment (tables + figures in results/synthetic/);
# `make run ARGS=--smoke` runs the same path at toy size into runs/bench/synthetic-smoke/.
run: $(STAMP)
	$(VENV)/bin/mtl-bench --bench=synthetic $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist=loadfile

bench: $(STAMP)
	$(PY) -m benchmarks.balancer_step_time

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
