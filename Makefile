# One command per chore. Each target bootstraps .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench soak demo migrate clean tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: $(STAMP)  ## the whole stack on 127.0.0.1:5000 (embedded servers unless DATABASE_URL / REDIS_URL)
	$(BIN)/gridlens up

test: lint  ## lint, then every test against real servers (ops tests skip without `make tools`)
	$(BIN)/pytest

tools:  ## prometheus, promtool, docker-compose, systemd-analyze, chromium for the ops and page tests (Debian packages)
	@ops/install-tools

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

BENCH_STAMP := $(VENV)/.installed-bench
NODE_BENCH := bench/bullmq_node

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@if command -v npm >/dev/null 2>&1; then cd $(NODE_BENCH) && npm install --silent --no-audit --no-fund; \
	else echo "npm not found: the Node.js BullMQ comparison will be skipped"; fi
	@touch $@

bench: $(BENCH_STAMP)  ## benchmarks; each prints its figures
	$(BIN)/python -m bench

SOAK_MINUTES ?= 30

soak: $(STAMP)  ## a stack of its own at the rate cap for SOAK_MINUTES (30): memory, lag, errors, rows
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

demo: $(STAMP)  ## the acceptance of SPEC §9 against the running stack (`make run` first)
	$(BIN)/gridlens demo

migrate: $(STAMP)
	$(BIN)/gridlens migrate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
