# The two commands a newcomer needs: `make run` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check bench bench-quality venv kernels vendor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) kernels

## kernels: the geofence kernels a worker runs, compiled ahead of time (numba.pycc: needs a C compiler and
## Python's headers), so that a worker never loads numba (~115 MiB less); nothing to do when fresh. Without
## it (or stale: a kernel file changed since), numba's JIT runs and the log says so
kernels: $(STAMP)
	$(BIN)/python -m tracker.geofence.kernels || true

## run: the service on embedded PostgreSQL and MQTT, with a demo city and simulated children
run: $(STAMP) kernels
	$(BIN)/tracker run --demo

## test: the whole suite (real PostgreSQL and MQTT: from TRACKER_TEST_* or embedded ones); the
## slowest tests are listed at the end (CI's 2-core run should stay well under 15 minutes)
test: $(STAMP) kernels
	$(BIN)/python -m pytest --durations=15

## check: lint, format check and type check
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: benchmarks that print figures and ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python bench/geofence.py
	$(BIN)/python bench/alert_quality.py --world today --intervals 15
	$(BIN)/python bench/alert_quality.py --world today --quick --intervals 1,5,30,60
	$(BIN)/python bench/alert_quality.py --world city --quick
	$(BIN)/python bench/positions_copy.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/mqtt_receive.py
	$(BIN)/python bench/burst.py

## bench-quality: the alert-quality bench's full plan, both worlds at 1, 5, 15, 30 and 60 s (10,000
## city child-days at 15 s): hours, not make bench's hour (docs/alert-quality.md says how long)
bench-quality: $(STAMP)
	$(BIN)/python bench/alert_quality.py --world both --why --plot docs/alert-quality.png

## vendor: refresh the map libraries (Leaflet, Leaflet-Geoman) in tracker/api/static/vendor from npm
vendor: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/vendor-web.sh

clean:
	rm -rf $(VENV) .tracker-data .pytest_cache .mypy_cache .ruff_cache
