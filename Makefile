PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,local,redis,server,cost,metrics,tracing

.PHONY: run test lint typecheck pytest bench clean redis node-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# llama.cpp (the [local] extra) compiles with -march=native by default, which on a virtual
# machine that reports AMX without enabling it crashes at the first decode (SIGSEGV at
# ldtilecfg). On x86_64 we build the portable AVX2 variant instead; set CMAKE_ARGS to override.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif

# Reinstall only when pyproject.toml changes; one stamp per set of extras.
$(VENV)/.stamp-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$*]"
	touch $@

# The demo needs only the [local] extra (the first install compiles llama.cpp, ~5 min).
run: $(VENV)/.stamp-local
	$(BIN)/msgflux demo "Who was Frank Rosenblatt?"

lint: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.stamp-$(EXTRAS)
	$(BIN)/mypy --strict src

# The @pytest.mark.redis tests start a real redis-server (Debian's package) on a free port.
redis:
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)

# The server's client tests run the official openai npm package (pinned in package-lock.json).
NODE_DIR := tests/server/node
$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix $(NODE_DIR) --no-audit --no-fund; else echo "npm not found: the Node client test will be skipped"; fi

node-deps: $(NODE_DIR)/node_modules/.package-lock.json

pytest: $(VENV)/.stamp-$(EXTRAS) redis node-deps
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(NODE_DIR)/node_modules
