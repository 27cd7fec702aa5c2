# Every target bootstraps .venv itself, so `make demo` and `make test` work first thing on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# The torch builds that lie on this kind of machine's disk (pip takes them without a download).
ifeq ($(shell uname -m),aarch64)
TORCH_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
RUN ?= runs/quickstart

.PHONY: install system-deps demo test lint bench study clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_SPEC)
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/mlsweep plan sweeps/quickstart.yaml | tail -n 1
	RAY_AUTH_MODE=disabled $(BIN)/mlsweep launch sweeps/quickstart.yaml --storage runs
	$(BIN)/mlsweep analyze $(RUN)
	$(BIN)/mlsweep report $(RUN)
	@echo "open $(RUN)/report.html"

system-deps:  # Chromium and Fashion-MNIST for the tests (apt as root, else one line on what to install)
	@bash tools/system-deps.sh

test: install system-deps
	RAY_AUTH_MODE=disabled $(BIN)/pytest

lint: install
	$(BIN)/ruff check .

bench: install  # options: make bench BENCH_ARGS="--quick --only throughput"
	RAY_AUTH_MODE=disabled $(PY) -m bench $(BENCH_ARGS)

# The CPU-feasible parts of the reproduction study (analysis/README.md), from scratch.
STUDIES ?= paper-synthetic paper-digits seven-losses miner-ablation paper-fashion
study: install
	for s in $(STUDIES); do \
	  rm -rf runs/$$s analysis/$$s && mkdir -p analysis/$$s && \
	  RAY_AUTH_MODE=disabled $(BIN)/mlsweep launch sweeps/$$s.yaml --storage runs && \
	  $(BIN)/mlsweep analyze runs/$$s > analysis/$$s/analyze.txt && \
	  $(BIN)/mlsweep report runs/$$s --out analysis/$$s/report.html --png analysis/$$s/figures && \
	  cp runs/$$s/analysis/*.parquet analysis/$$s/ || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
