# humanline: developer and operator entry points. Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := deploy/requirements.lock
BUF    := npx --yes @bufbuild/buf@1.75.0
PROTOS := $(wildcard protos/humanline/v1/*.proto)
GEN    := src/humanline/v1

HUMANLINE_LISTEN       ?= 127.0.0.1:50051
HUMANLINE_DATABASE_URL ?= sqlite+aiosqlite:///.data/humanline.db
export HUMANLINE_LISTEN HUMANLINE_DATABASE_URL

.PHONY: help venv run demo bench test lint proto proto-check lock clean

help:
	@echo "make run          install into .venv and serve on $(HUMANLINE_LISTEN) (embedded store; prints tokens)"
	@echo "make demo         a server on a fresh embedded store and a one-minute simulated crowd"
	@echo "make bench        measure lifecycles/s, time to offer, memory per stream (bench/results.json)"
	@echo "make test         run the whole test suite (and check generated code is current)"
	@echo "make lint         ruff, mypy, buf lint"
	@echo "make proto        regenerate $(GEN) from protos/"
	@echo "make lock         re-pin $(LOCK) from a fresh resolve"

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,plot]'
	@touch $(STAMP)

venv: $(STAMP)

# The keyring is made on first start; tokens to try it with are printed at every start.
run: $(STAMP)
	@mkdir -p .data
	HUMANLINE_AUTH_KEYS="$${HUMANLINE_AUTH_KEYS:-.data/keys.json}" \
	HUMANLINE_PRINT_TOKENS="$${HUMANLINE_PRINT_TOKENS:-true}" $(BIN)/humanline serve

demo: $(STAMP)
	$(BIN)/humanline demo

# Several minutes: fresh servers (SQLite, and PostgreSQL when reachable) and a grpc echo ceiling.
bench: $(STAMP)
	$(BIN)/humanline bench --out bench/results.json

test: $(STAMP) proto-check
	$(BIN)/python -m pytest

lint: $(STAMP) proto-check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	cd protos && $(BUF) lint

proto: $(STAMP)
	rm -rf $(GEN) && mkdir -p $(GEN)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src $(PROTOS)
	@printf '"""Generated from protos/humanline/v1 by `make proto`. Do not edit."""\n' > $(GEN)/__init__.py

# Regenerates into a scratch directory and fails when the committed code differs.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	  $(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp $(PROTOS) && \
	  printf '"""Generated from protos/humanline/v1 by `make proto`. Do not edit."""\n' > $$tmp/humanline/v1/__init__.py && \
	  if diff -r -x __pycache__ $$tmp/humanline/v1 $(GEN) >/dev/null; then rm -rf $$tmp; echo "generated code is current"; \
	  else diff -r -x __pycache__ $$tmp/humanline/v1 $(GEN) | head -20; rm -rf $$tmp; \
	       echo "generated code in $(GEN) is stale: run 'make proto' and commit"; exit 1; fi

# Re-resolves the newest versions allowed by pyproject.toml into the lock file.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet --upgrade pip
	.lockenv/bin/python -m pip install --quiet '.[dev,plot]'
	{ echo '# Pinned versions for make and deploy/Dockerfile; regenerate with make lock.'; \
	  .lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^humanline'; } > $(LOCK)
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
