# Developer entry points. `make check` is the lint gate scripts/test runs first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: check test fmt schemas bench

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test:
	scripts/test

fmt:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas:
	scripts/gen-schemas

# Full benchmark against the raw libvirt floor (bench/README.md); e.g. BENCH_ARGS=--tiny.
bench:
	$(BIN)/python bench/run.py $(BENCH_ARGS)
