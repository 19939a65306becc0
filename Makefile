# Peerlens: `make run` and `make test` bootstrap everything on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
export PEERLENS_ENV ?= dev

.PHONY: run test test-fast lint bench setup browser wrk postgres migrate demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Debian's Chromium and its driver drive the participant-form tests.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing Debian chromium + chromium-driver"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
	  || { echo "error: could not install chromium (run as root or install chromium and chromium-driver)"; exit 1; }; \
	fi

# Debian's wrk drives the HTTP benchmarks: a native load generator that leaves the server its cores.
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
	  echo "installing Debian wrk"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null \
	  || { echo "error: could not install wrk (run as root or install the wrk package)"; exit 1; }; \
	fi

# PostgreSQL must answer: the suite runs every database test against it too.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "PostgreSQL is not answering; starting it"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@pg_isready -h 127.0.0.1 -p 5432 || { echo "error: PostgreSQL at 127.0.0.1:5432 is required for the tests"; exit 1; }

migrate: setup
	$(VENV)/bin/peerlens migrate

demo: migrate
	$(VENV)/bin/peerlens demo

# Links, emails and the demo's hints name the port actually served (PEERLENS_BASE_URL wins if set).
run demo: export PEERLENS_BASE_URL ?= http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)

run: demo
	$(VENV)/bin/peerlens serve --host $(HOST) --port $(PORT)

# The lint and type gate: ruff (lint and format) on everything, mypy on the service and the libraries.
LINTED := api instruments analysis qualitative tests bench migrations tools
lint: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# Two workers, a test file each at a time (module-scoped databases are made once per file);
# PYTEST_XDIST= runs in one process.
PYTEST_XDIST ?= -n 2 --dist loadfile
test: lint browser postgres
	PEERLENS_REQUIRE_POSTGRES=1 $(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_XDIST) $(PYTEST_ARGS)

# The same without the tests marked slow (and without the lint gate): for the edit-test loop.
test-fast: setup browser postgres
	PEERLENS_REQUIRE_POSTGRES=1 $(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

bench: setup wrk postgres
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) peerlens.db artifacts
