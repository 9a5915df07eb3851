# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SERVICES := lead-service pipeline-service assignment-service notification-service metrics-service incentive-service
STAMP  := $(VENV)/.installed

.PHONY: install run test schemas openapi clean

$(STAMP): shared/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e shared $(foreach s,$(SERVICES),-e 'services/$(s)[test]') -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install  ## install and run all six services (embedded unless PostgreSQL/RabbitMQ are configured)
	$(BIN)/salesflow run

test: install  ## install and run every test against the local PostgreSQL and RabbitMQ
	$(BIN)/salesflow schemas export --check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

schemas: install  ## regenerate docs/events from the event catalogue
	$(BIN)/salesflow schemas export

openapi: install  ## regenerate docs/openapi.json from the six services' specs
	$(BIN)/salesflow openapi

clean:
	rm -rf $(VENV) data .pytest_cache
