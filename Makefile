# The two commands: `make run` (the product on http://127.0.0.1:8000 with demo data) and
# `make test` (the whole suite). Both make their own virtualenv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test install lint format migrate demo worker web simulator clean bench-import messages messages-check

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
	# The arrows between the apps (pyproject.toml [tool.importlinter], docs/architecture.md).
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(MAKE) --no-print-directory messages-check
	# Tests keep their files (and the filesystem broker's queue) apart from a dev server's ./var;
	# the tests that need a real worker start one on MEDCOT_TEST_REDIS_URL themselves.
	MEDCOT_VAR_DIR=$${MEDCOT_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/pytest --ignore=tests/faults $(PYTEST_ARGS)
	# The fault tests restart Redis and kill workers mid-run; they get a process of their own so
	# no Celery connection state from the rest of the suite reaches them.
	MEDCOT_VAR_DIR=$${MEDCOT_VAR_DIR:-$(CURDIR)/var/test} $(BIN)/pytest tests/faults $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Translations (docs/translating.md). `make messages` regenerates locale/*/LC_MESSAGES/*.po from
# the code, lists every new, untranslated or fuzzy entry and compiles the .mo files; fill in the
# msgstr lines it names and run it again. Needs GNU gettext (apt-get install gettext).
messages: install
	$(BIN)/python manage.py catalogue

# The check `make test` runs: the committed catalogues are complete and compiled, and the code has
# no string they lack. Without gettext (a fresh laptop) only the committed files are checked
# (tests/i18n does that too); CI installs gettext (.ci/run), so there it is the full check.
messages-check: install
	@if command -v xgettext >/dev/null && command -v msgmerge >/dev/null; then \
	  $(BIN)/python manage.py catalogue --check; \
	elif [ -n "$$MEDCOT_REQUIRE_SERVICES" ]; then \
	  echo "GNU gettext is missing (apt-get install gettext)"; exit 1; \
	else \
	  echo "messages-check: GNU gettext not installed; skipping the makemessages comparison"; \
	fi

bench-import: install
	$(BIN)/python bench/seed_import.py

clean:
	rm -rf var .pytest_cache test-artifacts
