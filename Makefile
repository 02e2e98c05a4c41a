# Flowsight: `make run` starts Kafka and a worker; `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup tools run test lint test-unit kafka-up kafka-down clean bench-decode

setup: tools $(VENV)/.installed kafka-jars

tools:
	@compose/ensure-tools.sh

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

kafka-jars:
	@compose/kafka/kafka.sh fetch

run: setup
	@compose/run.sh

test: setup lint
	$(BIN)/python -m pytest -ra --durations=30

# style and static checks: ruff everywhere, mypy on the pure packages (pyproject.toml)
lint: setup
	$(BIN)/ruff check app agents web tables tests bench
	$(BIN)/mypy

test-unit: setup
	$(BIN)/python -m pytest -ra tests/unit tests/agent

kafka-up: setup
	compose/kafka/kafka.sh start

kafka-down:
	compose/kafka/kafka.sh stop

bench-decode: setup
	bench/decode.sh

clean: kafka-down
	rm -rf var .cache $(VENV) *.egg-info
