# auditd-py — developer entry points. Everything runs inside .venv, and each
# target installs what it needs first (system packages via .ci/bootstrap).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
TESTDEPS := $(VENV)/.test

.PHONY: all sysdeps-runtime sysdeps-test venv test test-pure unit lint soak demo bench bench-show boot-test wheels shell-files clean

all: test

sysdeps-runtime:
	@bash .ci/bootstrap runtime

sysdeps-test:
	@bash .ci/bootstrap test

## The runtime only: what `make demo` needs.
$(RUNTIME): pyproject.toml | sysdeps-runtime
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

## The test extra on top.
$(TESTDEPS): $(RUNTIME) | sysdeps-test
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(TESTDEPS)

lint: sysdeps-test $(TESTDEPS)
	$(BIN)/ruff check auditd_py tests benchmarks
	$(BIN)/ruff format --check auditd_py tests benchmarks
	$(BIN)/mypy

## The whole suite, the systemd boot test and integration tests included (soak loops run short here).
test: sysdeps-test $(TESTDEPS) lint
	$(BIN)/pytest -m "not soak" -q
	$(MAKE) test-pure

## The chain, vector and attack tests again with the pure-Python loop forced
## (the suite runs the compiled one; tests/test_speedups.py compares the two).
PURE_TESTS := tests/test_vectors.py tests/test_attacks.py tests/test_chain_properties.py \
	tests/test_verification.py tests/test_segments.py tests/test_retention.py
test-pure: sysdeps-test $(TESTDEPS)
	AUDITD_PY_PURE=1 $(BIN)/pytest -m "not soak" -q $(PURE_TESTS)

unit: sysdeps-test $(TESTDEPS)
	$(BIN)/pytest -m "not soak and not integration" -q

## Only the real-systemd boot test of the unit and the install guide.
boot-test: sysdeps-test $(TESTDEPS)
	$(BIN)/pytest -m boot -q

## Long torture loops (crash/kill loops with many iterations).
soak: sysdeps-test $(TESTDEPS)
	AUDITD_SOAK=1 $(BIN)/pytest -m soak -q

demo: sysdeps-runtime $(RUNTIME)
	$(BIN)/python -m auditd_py.demo

bench: sysdeps-test $(TESTDEPS)
	$(BIN)/python -m benchmarks.bench_seal_verify
	$(BIN)/python benchmarks/bench_daemon.py --goals --rotate-bytes 64MB

## `show -n 10`, --since, --seq on a 1M-record archive, against the CLI's start-up.
bench-show: sysdeps-test $(TESTDEPS)
	$(BIN)/python benchmarks/bench_show.py

## Shell completion and the man page under generated/, again from the parser (after CLI changes).
shell-files: $(TESTDEPS)
	$(BIN)/python -m auditd_py.manual generated

## dist/wheels/: auditd-py and every dependency as wheels for this Python, for
## hosts without a compiler or network (README, "Installing on a QA host").
wheels: sysdeps-runtime $(RUNTIME)
	rm -rf dist build
	$(BIN)/pip install --quiet build
	$(BIN)/python -m build --outdir dist .
	$(BIN)/pip wheel --quiet --wheel-dir dist/wheels dist/auditd_py-*.whl

## Also lifts the append-only/immutable flags a demo or benchmark daemon set.
clean:
	-chattr -R -f -i -a demo-out bench-out 2>/dev/null
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis demo-out bench-out build dist
