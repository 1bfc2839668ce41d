# The two commands a newcomer needs: `make run` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check bench venv vendor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the service on embedded PostgreSQL and MQTT, with a demo city and simulated children
run: $(STAMP)
	$(BIN)/tracker run --demo

## test: the whole suite (real PostgreSQL and MQTT: from TRACKER_TEST_* or embedded ones)
test: $(STAMP)
	$(BIN)/python -m pytest

## check: lint, format check and type check
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: benchmarks that print figures and ratios against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python bench/geofence.py
	$(BIN)/python bench/alert_quality.py --world today
	$(BIN)/python bench/alert_quality.py --world city --quick
	$(BIN)/python bench/positions_copy.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/mqtt_receive.py
	$(BIN)/python bench/burst.py

## vendor: refresh the map libraries (Leaflet, Leaflet-Geoman) in tracker/api/static/vendor from npm
vendor: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/vendor-web.sh

clean:
	rm -rf $(VENV) .tracker-data .pytest_cache .mypy_cache .ruff_cache
