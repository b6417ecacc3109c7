# The README's two commands: `make run` and `make test`. Each creates the virtual
# environment it needs (Python 3.12 or newer) and installs the project into it.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: run test test-coverage db-reset docker-build seed screenshot lint typecheck contracts check clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is needed (python3.12 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/ledger serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck contracts

# The dashboard's browser test drives Debian's chromium (through Playwright, never a
# browser download of its own): as root, install it when it is missing.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: $(CHROMIUM) is missing and this is not root: the browser test will be skipped"; \
	fi

test: check $(CHROMIUM)
	$(BIN)/pytest

# The suite with line and branch coverage of src/ (terminal summary and htmlcov/).
test-coverage: check $(CHROMIUM)
	$(BIN)/pytest --cov=ledger --cov=projections --cov=workers --cov-branch \
		--cov-report=term-missing:skip-covered --cov-report=html

# Deletes the database: the embedded one after a prompt, DATABASE_URL's only with CONFIRM=yes.
db-reset: $(STAMP)
	$(BIN)/ledger db-reset $(if $(filter yes,$(CONFIRM)),--yes)

# Sample jobs of every registered type (through the event store), for a first look.
seed: $(STAMP)
	$(BIN)/ledger seed

# The README's picture of the dashboard, taken by the browser test.
screenshot: $(STAMP) $(CHROMIUM)
	mkdir -p docs
	LEDGER_SCREENSHOT=docs/dashboard.png $(BIN)/pytest tests/browser -q

IMAGE ?= job-ledger:latest
docker-build:
	docker build --tag $(IMAGE) .

# Benchmarks (not part of `make test`): one durable embedded PostgreSQL, prints the
# table and writes bench/results/latest.json. See BENCHMARKS.md.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
