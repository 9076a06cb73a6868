# Two commands: `make run` brings the whole stack up, `make test` runs every check.
# Both install what they need first (a virtualenv pinned by requirements.lock, and the pinned
# Meilisearch build); PostgreSQL comes from the machine's server binaries, else from pgserver.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint lock

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)
	$(BIN)/python -c "from infra.meili import ensure_binary; ensure_binary()"

run: install
	$(BIN)/ipx up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: lint
	$(BIN)/pytest

# Re-resolve the pins after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/ipx-lock && $(PYTHON) -m venv /tmp/ipx-lock
	/tmp/ipx-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/ipx-lock/bin/pip freeze --exclude-editable > requirements.lock
