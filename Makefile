PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,local,redis,server,cost,metrics,tracing,aws,gcp
# Every package the tests and tools run against, pinned (pip reads it as constraints, so the
# library's own ranges in pyproject.toml stay loose for users). `make lock` refreshes it.
LOCK := requirements/dev.lock
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
comma := ,

.PHONY: run test lint typecheck pytest bench clean redis browser node-deps lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)

# llama.cpp (the [local] extra) compiles with -march=native by default, which on a virtual
# machine that reports AMX without enabling it crashes at the first decode (SIGSEGV at
# ldtilecfg). On x86_64 we build the portable AVX2 variant instead; set CMAKE_ARGS to override.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif

# Reinstall only when pyproject.toml or the lock changes; one stamp per set of extras.
$(VENV)/.stamp-%: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e ".[$*]"
	touch $@

# Resolve every extra again to the newest releases the ranges in pyproject.toml allow, for
# Python 3.11 (what CI runs); review the diff, run `make test`, commit both files together.
lock: | $(BIN)/python
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
		--python-version 3.11 --annotation-style line --upgrade \
		--custom-compile-command "make lock" -o $(LOCK)

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

# The dashboard's test drives Debian's chromium through its chromedriver (selenium, from the
# lock); browsers cannot be downloaded at run time.
browser:
	command -v chromedriver >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver)

# The server's client tests run npm packages pinned in package-lock.json: the official openai
# SDK (tests/server/node) and the field's coding agents, Claude Code and Codex CLI
# (tests/clients). Without npm those tests are skipped, saying why.
NODE_DIRS := tests/server/node tests/clients
%/node_modules/.package-lock.json: %/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix $* --no-audit --no-fund; else echo "npm not found: the Node client tests will be skipped"; fi

node-deps: $(foreach d,$(NODE_DIRS),$(d)/node_modules/.package-lock.json)

pytest: $(VENV)/.stamp-$(EXTRAS) redis browser node-deps
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(foreach d,$(NODE_DIRS),$(d)/node_modules)
