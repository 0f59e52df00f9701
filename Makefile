# IFlyChat backend. `make dev` runs the API locally, `make test` runs the tests.
# Both create .venv and install requirements.txt on first use (and again when it changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements.txt layers/deps/requirements.txt $(wildcard functions/*/requirements.txt)

.PHONY: dev test venv validate build bench clean

venv: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

dev: $(STAMP)  ## run the whole API on http://127.0.0.1:$${PORT:-3000}
	$(PY) -m local.run

test: $(STAMP)  ## run the test suite against a real PostgreSQL
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## speed: warm latency vs floor and peer, round trips, cold start, scale, size (< 5 min)
	$(PY) -m pip install --disable-pip-version-check -q -r bench/requirements.txt
	$(PY) -m bench.run

validate: $(STAMP)  ## lint the SAM template
	$(VENV)/bin/sam validate --lint

clean:
	rm -rf .aws-sam .pytest_cache
