# runbook developer and user entry points. `make demo` and `make test` work on a fresh machine:
# each creates the virtualenv and installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BQEMU  ?= .venv-bqemu

.PHONY: install demo test chaos check lint typecheck bqemu browser bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev,mcp]'
	$(BIN)/python -m compileall -q runbook >/dev/null  # start-up stays fast with PYTHONDONTWRITEBYTECODE
	touch $@

# The BigQuery emulator pins old duckdb/sqlglot, so it lives in its own virtualenv.
bqemu: $(BQEMU)/.installed

$(BQEMU)/.installed:
	$(PYTHON) -m venv $(BQEMU)
	$(BQEMU)/bin/python -m pip install -q --upgrade uv
	$(BQEMU)/bin/uv pip install -q --python $(BQEMU)/bin/python --compile-bytecode bqemulator numpy duckdb-extension-spatial
	touch $@

# The dashboard's browser tests drive Debian's chromium through Playwright (executable_path):
# installed from the system's packages where missing; Playwright's own browser downloads are not used.
CHROMIUM ?= /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The repository root is the demo workspace: state/ (git-ignored) and handoffs/ are written here.
demo: install
	$(BIN)/runbook demo --dir .

lint: install
	$(BIN)/ruff check runbook tests bench
	$(BIN)/ruff format --check runbook tests bench

typecheck: install
	$(BIN)/mypy runbook

check: lint typecheck

test: install bqemu browser check
	RUNBOOK_BQEMU_PYTHON=$(abspath $(BQEMU))/bin/python $(BIN)/pytest

# The chaos suite alone (it also runs in `make test`): kill -9 at random moments, races, leases.
chaos: install
	$(BIN)/pytest tests/chaos -m chaos

bench: install
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/cli_latency.py
	$(BIN)/python bench/concurrency.py

clean:
	rm -rf $(VENV) $(BQEMU) .pytest_cache .mypy_cache .ruff_cache
