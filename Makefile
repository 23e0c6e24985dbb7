PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.stamp-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

run: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/msgflux demo "Who was Frank Rosenblatt?"

lint: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/mypy --strict src

pytest: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
