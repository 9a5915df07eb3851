# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SERVICES := lead-service pipeline-service assignment-service notification-service metrics-service incentive-service
STAMP  := $(VENV)/.installed
# The API contract is checked from the outside with Node tools pinned by clients/typescript/package-lock.json.
TS_CLIENT := clients/typescript
# What the type gate checks: the shared library and the six services (tests are linted, not type-checked).
MYPY_PACKAGES := salesflow_shared lead_service pipeline_service assignment_service notification_service \
                 metrics_service incentive_service
NPM_STAMP := $(TS_CLIENT)/node_modules/.installed

.PHONY: install run test test-fast lint schemas openapi api-contract clean

$(STAMP): shared/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e shared $(foreach s,$(SERVICES),-e 'services/$(s)[test]') -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install  ## install and run all six services (embedded unless PostgreSQL/RabbitMQ are configured)
	$(BIN)/salesflow run

$(NPM_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

test: install lint api-contract  ## install, pass the lint and type gate, and run every test against the local PostgreSQL and RabbitMQ
	$(BIN)/salesflow schemas export --check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install  ## the service-layer tests only: every service's use cases and handlers on SQLite, no servers, in seconds
	$(BIN)/python -m pytest $(foreach s,$(SERVICES),$(wildcard services/$(s)/tests/service_layer)) $(PYTEST_ARGS)

lint: install  ## the lint and type gate, zero findings: ruff (ruff.toml) over everything, mypy (mypy.ini) over the code
	$(BIN)/ruff check .
	$(BIN)/mypy $(addprefix -p ,$(MYPY_PACKAGES))

api-contract: install $(NPM_STAMP)  ## docs/openapi.json current, Redocly-clean, and a strict TypeScript client compiles
	$(BIN)/salesflow openapi --check
	cd $(TS_CLIENT) && npm run -s lint && npm run -s generate && npm run -s typecheck

schemas: install  ## regenerate docs/events from the event catalogue
	$(BIN)/salesflow schemas export

openapi: install  ## regenerate docs/openapi.json from the six services' specs
	$(BIN)/salesflow openapi

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache $(TS_CLIENT)/node_modules
