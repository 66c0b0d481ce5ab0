# churnwatch — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA := deploy/kafka/kafka.sh
PROC := deploy/proc.sh
export KAFKA_PORT ?= 9092
export CHURNWATCH_KAFKA_BOOTSTRAP ?=
BOOTSTRAP = $(if $(CHURNWATCH_KAFKA_BOOTSTRAP),$(CHURNWATCH_KAFKA_BOOTSTRAP),127.0.0.1:$(KAFKA_PORT))
API_PORT ?= 8000
PYTEST_ARGS ?=
DEMO_WATCH ?= 1

.PHONY: help install kafka-install kafka-up kafka-down kafka-status test test-faults soak test-unit lint demo watch down

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/.installed ## Create .venv and install churnwatch with its dev tools

kafka-install: ## Resolve the Apache Kafka broker jars from Maven Central (once)
	@$(KAFKA) install

kafka-up: kafka-install ## Start the local Kafka broker (KRaft, 127.0.0.1:$KAFKA_PORT)
	@$(KAFKA) start

kafka-down: ## Stop the local Kafka broker started by kafka-up
	@$(KAFKA) stop

kafka-status: ## Exit 0 when the local broker is up
	@$(KAFKA) status

# Runs $(1) with the local broker up: starts it if it is down and stops it again if it started it.
with_kafka = started=0; \
	if ! $(KAFKA) status >/dev/null 2>&1; then $(KAFKA) start || exit 1; started=1; fi; \
	stop_started() { if [ $$started = 1 ]; then $(KAFKA) stop; fi; }; \
	trap 'stop_started; exit 130' INT TERM; \
	CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(1); rc=$$?; \
	stop_started; exit $$rc

test: install kafka-install ## Run the whole suite but the fault suite; starts Kafka if it is down and stops what it started
	@$(call with_kafka,$(BIN)/python -m pytest -m "not faults" $(PYTEST_ARGS) tests)

test-faults: install kafka-install ## Fault and abuse suite (crashes, broker restarts, a 3-node cluster, hostile input); rewrites docs/reliability.md
	@$(call with_kafka,$(BIN)/python -m pytest -m faults $(PYTEST_ARGS) tests/faults)

DURATION ?= 600
soak: install kafka-install ## Full stack at a steady rate for DURATION seconds; fails on memory growth, unbounded lag or wrong counts
	@$(call with_kafka,$(BIN)/python -m tests.faults.soak --duration $(DURATION))

test-unit: install ## Run the unit tests only (no broker)
	$(BIN)/python -m pytest -m "not integration" tests/unit

lint: install ## ruff and mypy --strict
	$(BIN)/ruff check streamer api tests bench
	$(BIN)/ruff format --check streamer api tests bench
	$(BIN)/mypy

demo: install kafka-up ## Start Kafka, the worker, the API and a simulator; then follow the alerts
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.topics
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) CHURNWATCH_RULES_FILE=deploy/rules.demo.toml \
		$(PROC) start worker $(BIN)/python -m streamer
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) \
		CHURNWATCH_API_KEYS="$$($(BIN)/python -m api.keys --name demo --config-for .local/demo-api-key)" \
		$(PROC) start api $(BIN)/python -m api --port $(API_PORT)
	@$(BIN)/python -m streamer.waitfor http://127.0.0.1:$(API_PORT)/healthz http://127.0.0.1:9102/metrics
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(PROC) start simulator $(BIN)/python -m streamer.simulate --accounts 40
	@echo
	@echo "churnwatch is up:"
	@echo "  API            http://127.0.0.1:$(API_PORT)/docs   (liveness: /healthz)"
	@echo "  demo API key   $$(cat .local/demo-api-key)   (Authorization: Bearer <key>)"
	@echo "  try            curl -H \"Authorization: Bearer $$(cat .local/demo-api-key)\" '127.0.0.1:$(API_PORT)/v1/accounts?band=poor'"
	@echo "  worker metrics http://127.0.0.1:9102/metrics"
	@echo "  logs           .local/run/{worker,api,simulator}.log   (Kafka: deploy/kafka/kafka.sh logs)"
	@echo "  stop with      make down"
	@echo
	@echo "40 simulated accounts are using the product; some will stop. With the demo rules an account"
	@echo "is quiet after 45 s of silence, so the first alerts arrive within about a minute."
	@echo
	@if [ "$(DEMO_WATCH)" != "0" ]; then CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.watch --from-beginning; fi

watch: ## Follow the alerts in this terminal
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.watch --from-beginning

down: ## Stop everything demo started (API, worker, Kafka)
	@$(PROC) stop simulator
	@$(PROC) stop api
	@$(PROC) stop worker
	@$(KAFKA) stop
