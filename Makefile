# auditd-py — developer entry points. Everything runs inside .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test unit lint soak demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check auditd_py tests $(wildcard benchmarks)
	$(BIN)/ruff format --check auditd_py tests $(wildcard benchmarks)
	$(BIN)/mypy

## The whole suite, integration tests included (soak loops run short here).
test: $(STAMP) lint
	$(BIN)/pytest -m "not soak" -q

unit: $(STAMP)
	$(BIN)/pytest -m "not soak and not integration" -q

## Long torture loops (crash/kill loops with many iterations).
soak: $(STAMP)
	AUDITD_SOAK=1 $(BIN)/pytest -m soak -q

demo: $(STAMP)
	$(BIN)/python -m auditd_py.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_seal_verify.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis demo-out bench-out
