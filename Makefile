# The two commands: `make run` (start everything on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The integration tier's real servers (scripts/ensure-services.sh makes sure they answer).
TEST_DATABASE_URL ?= postgres://supplychain:supplychain@127.0.0.1:5432/supplychain
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test install lint format bench clean mutation

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11, python3.12 or python3 on PATH)."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py runstack

test: install
	bash scripts/ensure-services.sh "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	$(BIN)/ruff check .
	DATABASE_URL="$(TEST_DATABASE_URL)" CELERY_BROKER_URL="$(TEST_REDIS_URL)" SUPPLYCHAIN_EXTRA_APPS=tests.probe \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# Mutation testing of the critical modules (slow, not part of `make test`): prints `mutants: N killed, M survived`.
mutation: install
	bash scripts/ensure-services.sh "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	TEST_DATABASE_URL="$(TEST_DATABASE_URL)" TEST_REDIS_URL="$(TEST_REDIS_URL)" MUTATION_CONTINUE="$(MUTATION_CONTINUE)" \
		MUTATION_TIMEOUT="$(or $(MUTATION_TIMEOUT),3600)" bash scripts/mutation.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmarks against the same real servers as the tests; each prints JSON (see README, Measured figures).
# PIPELINE_BENCH_ARGS=--quick shortens the pipeline engine's (a minute instead of about five).
bench: install
	bash scripts/ensure-services.sh "$(TEST_DATABASE_URL)" "$(TEST_REDIS_URL)"
	$(BIN)/python bench/events.py
	$(BIN)/python bench/stock.py $(BENCH_ARGS)
	$(BIN)/python bench/pipeline.py $(PIPELINE_BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache mutants
