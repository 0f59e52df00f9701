# IFlyChat backend. `make dev` runs the API locally, `make test` runs the tests.
# Both create .venv and install requirements.txt on first use (and again when it changes).
# The AWS SAM CLI lives in its own .venv-sam (requirements-sam.txt): its pins must not leak
# into the app's venv. `make build` needs python3.12 (the Lambda runtime) on PATH.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements.txt layers/deps/requirements.txt $(wildcard functions/*/requirements.txt)
SAM_VENV  := .venv-sam
SAM       := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
STAGE  ?= staging
export SAM_CLI_TELEMETRY = 0

.PHONY: dev test venv sam validate build openapi deploy bench clean

venv: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

sam: $(SAM_STAMP)

$(SAM_STAMP): requirements-sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-sam.txt
	@touch $(SAM_STAMP)

dev: $(STAMP)  ## run the whole API on http://127.0.0.1:$${PORT:-3000}
	$(PY) -m local.run

test: $(STAMP) $(SAM_STAMP)  ## run the test suite against a real PostgreSQL
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## speed: warm latency vs floor and peer, round trips, cold start, scale, size (< 5 min)
	$(PY) -m pip install --disable-pip-version-check -q -r bench/requirements.txt
	SAM=$(SAM) $(PY) -m bench.run

validate: $(SAM_STAMP)  ## lint the SAM template
	$(SAM) validate --lint

build: $(SAM_STAMP)  ## sam build: both layers (arm64 wheels) and every function, into .aws-sam/
	@python3.12 -V >/dev/null 2>&1 || { echo "make build: put python3.12 on PATH (sam builds for the Lambda runtime)"; exit 1; }
	$(SAM) build

openapi: $(STAMP)  ## regenerate openapi.json (a test fails when it is out of date)
	$(PY) -m local.openapi > openapi.json

deploy: $(SAM_STAMP)  ## ./deploy.sh $(STAGE): build, deploy, smoke-test (ARGS="--init-db ...")
	PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" PYTHON=$(PY) ./deploy.sh $(ARGS) $(STAGE)

clean:
	rm -rf .aws-sam .pytest_cache
