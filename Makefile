# The two commands: `make run` (the product on http://127.0.0.1:8000 with demo data) and
# `make test` (the whole suite). Both make their own virtualenv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test install lint format migrate demo worker web simulator clean bench-import

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py createdemo

# Web + worker (+ the simulated LLM when no real one is configured) on the embedded defaults:
# SQLite and a filesystem broker in ./var. Ctrl-C stops them all.
run: demo
	$(BIN)/python manage.py runlocal --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	# Tests keep their files (and the filesystem broker's queue) apart from a dev server's ./var;
	# the tests that need a real worker start one on MEDCOT_TEST_REDIS_URL themselves.
	MEDCOT_VAR_DIR=$${MEDCOT_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/pytest --ignore=tests/faults $(PYTEST_ARGS)
	# The fault tests restart Redis and kill workers mid-run; they get a process of their own so
	# no Celery connection state from the rest of the suite reaches them.
	MEDCOT_VAR_DIR=$${MEDCOT_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/pytest tests/faults $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-import: install
	$(BIN)/python bench/seed_import.py

clean:
	rm -rf var .pytest_cache test-artifacts
