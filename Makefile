# Service Desk: the two commands are `make run` and `make test` (see README.md).
PYTHON ?= python3

.PHONY: run test lint format clean help

help:
	@echo "make run    set up and start web (127.0.0.1:8000), Celery worker and beat"
	@echo "make test   install what is missing, start throwaway services, lint and run all tests"
	@echo "make lint   ruff and mypy only"
	@echo "make format ruff format"
	@echo "make bench  benchmarks (bench/): prints a table, writes bench/results/*.json"
	@echo "make bench-scale  every page at 10 000 and 100 000 issues over HTTP (bench/scale.py;"
	@echo "                  SCALE_ARGS=--small for a tenth); prints a table, writes bench/results/"
	@echo "make faults fault injection (bench/faults.py): kills, restarts, outages; prints a table"

run:
	@PYTHON=$(PYTHON) bash scripts/run.sh

test:
	@PYTHON=$(PYTHON) bash scripts/test.sh $(PYTEST_ARGS)

lint:
	@PYTHON=$(PYTHON) bash scripts/test.sh --lint-only

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

clean:
	rm -rf .venv artifacts .pytest_cache .ruff_cache .mypy_cache

.PHONY: bench
bench:
	@PYTHON=$(PYTHON) bash -c 'source scripts/venv.sh && ensure_venv dev && bash scripts/install-system-deps.sh && .venv/bin/python bench/ingest.py && .venv/bin/python bench/ingest.py --watchers 20 && .venv/bin/python bench/outbound.py && .venv/bin/python bench/search.py && .venv/bin/python bench/hostile.py'

.PHONY: bench-scale
bench-scale:
	@PYTHON=$(PYTHON) bash -c 'source scripts/venv.sh && ensure_venv dev && bash scripts/install-system-deps.sh && .venv/bin/python bench/scale.py $(SCALE_ARGS)'

.PHONY: faults
faults:
	@PYTHON=$(PYTHON) bash -c 'source scripts/venv.sh && ensure_venv dev && bash scripts/install-system-deps.sh && .venv/bin/python bench/faults.py'
