# humanline: developer and operator entry points. Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := deploy/requirements.lock
BUF    := npx --yes @bufbuild/buf@1.75.0
PROTOS := $(wildcard protos/humanline/v1/*.proto)
GEN    := src/humanline/v1
# The API as released: one buf image per release, humanline-v<version>.json. `api-check` holds
# the protos to the newest of them (by version, not by name).
VERSION  := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml)
RELEASES := protos/released
RELEASED := $(shell ls $(RELEASES)/humanline-v*.json 2>/dev/null | sort -V | tail -n 1)

HUMANLINE_LISTEN       ?= 127.0.0.1:50051
HUMANLINE_DATABASE_URL ?= sqlite+aiosqlite:///.data/humanline.db
export HUMANLINE_LISTEN HUMANLINE_DATABASE_URL

.PHONY: help venv run demo bench soak test lint proto proto-check api-check proto-release lock clean

help:
	@echo "make run          install into .venv and serve on $(HUMANLINE_LISTEN) (embedded store; prints tokens)"
	@echo "make demo         a server on a fresh embedded store and a one-minute simulated crowd"
	@echo "make bench        measure lifecycles/s, time to offer, memory per stream (bench/results.json)"
	@echo "make soak         a month of history preloaded, then steady lifecycles: cost per handoff over time (bench/soak.json)"
	@echo "make test         run the whole test suite (after proto-check and api-check)"
	@echo "make lint         ruff, mypy, buf lint"
	@echo "make proto        regenerate $(GEN) from protos/"
	@echo "make proto-check  check the generated code in $(GEN) is current"
	@echo "make api-check    buf lint, and buf breaking against the last release ($(or $(notdir $(RELEASED)),none yet))"
	@echo "make proto-release  record protos/ as released for version $(VERSION) (in $(RELEASES)/)"
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

# About forty minutes: on each store, 2,000,000 finished handoffs over 30 days preloaded, then
# ten minutes of steady lifecycles, beside three on an empty store.
soak: $(STAMP)
	$(BIN)/humanline bench --soak --out bench/soak.json

test: $(STAMP) proto-check api-check
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

# The API's hygiene: buf lint (STANDARD + COMMENTS), and buf breaking (FILE rules, per
# protos/buf.yaml) against the image of the last release, so that a change that would break a
# released client fails CI. The images are committed because CI clones may carry no tags.
api-check:
	@test -n "$(RELEASED)" || { echo "no released API image in $(RELEASES)/: run 'make proto-release'"; exit 1; }
	cd protos && $(BUF) lint
	cd protos && $(BUF) breaking --against ../$(RELEASED)

# Records the protos as released for the version in pyproject.toml: run it when cutting a
# release (after bumping the version), and commit the image; api-check then holds later
# changes to it. A release is never overwritten. The image is JSON rather than binary so that
# a review, or `diff` between two releases, shows what the API was; it is pretty-printed, one
# field a line, and leaves out source info (comments, line numbers), so only the API's shape
# is recorded and buf still reads it (`--against <file>.json`). buf reads only .proto files
# of the module, so the images in protos/released/ are not part of it.
proto-release: $(STAMP)
	@out=$(RELEASES)/humanline-v$(VERSION).json; \
	  if [ -e $$out ]; then echo "$$out exists: version $(VERSION) is released; bump the version in pyproject.toml first"; exit 1; fi; \
	  mkdir -p $(RELEASES) && tmp=$$(mktemp) && \
	  (cd protos && $(BUF) build --exclude-source-info -o $$tmp#format=json) && \
	  $(BIN)/python -m json.tool --indent 1 $$tmp $$out && rm -f $$tmp && echo "recorded $$out"

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
