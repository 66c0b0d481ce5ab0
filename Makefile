# churnwatch — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA := deploy/kafka/kafka.sh
POSTGRES := deploy/postgres/postgres.sh
PROC := deploy/proc.sh
export KAFKA_PORT ?= 9092
export CHURNWATCH_KAFKA_BOOTSTRAP ?=
BOOTSTRAP = $(if $(CHURNWATCH_KAFKA_BOOTSTRAP),$(CHURNWATCH_KAFKA_BOOTSTRAP),127.0.0.1:$(KAFKA_PORT))
API_PORT ?= 8000
WORKER_METRICS_PORT ?= 9102
PYTEST_ARGS ?=
DEMO_WATCH ?= 1
DEMO_ACCOUNTS ?= 40
DEMO_HISTORY_DAYS ?= 35

BENCH_ARGS ?=
# Where the fault suite and the soak write their report: untracked unless asked (reliability-report).
RELIABILITY_DIR ?= .local/reliability

.PHONY: help install browser node-sdk kafka-install postgres-install kafka-up kafka-down kafka-status test test-faults reliability-report soak test-unit lint bench demo watch down demo-reset

# Coloured only on a terminal: piped or redirected (`make help | less`, a CI log), it is plain text.
help: ## Show the targets
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
	| awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The compiled state codec (native/, Rust through PyO3, built by maturin with cargo from crates.io):
# about 15 s from scratch on 2 cores, rebuilt when its sources change. Without cargo the worker runs the
# Python originals of those parts (README: Compiled parts).
$(BIN)/.native: $(BIN)/.installed native/Cargo.toml native/Cargo.lock native/pyproject.toml native/churnwatch_native.pyi $(wildcard native/src/*.rs)
	@if ! command -v cargo >/dev/null; then \
		echo "install: WARNING: cargo (Rust) not found, so native/ is not built: the worker runs its Python"; \
		echo "install: code instead (slower, same results) and make test fails. Install cargo and run make install again."; \
	else \
		$(BIN)/python -m pip install --quiet ./native && touch $@; \
	fi

install: $(BIN)/.installed $(BIN)/.native ## Create .venv and install churnwatch with its dev tools and its compiled codec

browser: ## Install Debian's chromium for the dashboard's browser test, unless /usr/bin/chromium exists
	@deploy/browser.sh

node-sdk: tests/node/node_modules/.installed ## Install Segment's Node SDK for the SDK integration test (npm ci)

tests/node/node_modules/.installed: tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	@touch $@

kafka-install: ## Resolve the Apache Kafka broker jars from Maven Central (once)
	@$(KAFKA) install

postgres-install: ## Install Debian's PostgreSQL server for the tests' throw-away server, unless it is there
	@$(POSTGRES) install

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

test: install kafka-install postgres-install browser node-sdk ## Run the whole suite but the fault suite; starts Kafka if it is down and stops what it started
	@$(call with_kafka,$(BIN)/python -m pytest -m "not faults" $(PYTEST_ARGS) tests)

test-faults: install kafka-install ## Fault and abuse suite (crashes, broker restarts, a 3-node cluster, hostile input); report in $(RELIABILITY_DIR)
	@$(call with_kafka,RELIABILITY_DIR=$(RELIABILITY_DIR) $(BIN)/python -m pytest -m faults $(PYTEST_ARGS) tests/faults)
	@echo "test-faults: report in $(RELIABILITY_DIR)/reliability.md"

reliability-report: ## Run the fault suite and refresh the committed report, docs/reliability.md
	@$(MAKE) --no-print-directory test-faults RELIABILITY_DIR=docs

DURATION ?= 600
soak: install kafka-install ## Full stack at a steady rate for DURATION seconds; fails on memory growth, unbounded lag or wrong counts
	@$(call with_kafka,RELIABILITY_DIR=$(RELIABILITY_DIR) $(BIN)/python -m tests.faults.soak --duration $(DURATION))

test-unit: install ## Run the unit tests only (no broker)
	$(BIN)/python -m pytest -m "not integration" tests/unit

coverage: install ## Unit tests under coverage: statements of streamer/ and api/ they reach (no broker)
	$(BIN)/python -m coverage run --source=streamer,api -m pytest -q -m "not integration" tests/unit
	$(BIN)/python -m coverage report --skip-empty

lint: install ## ruff, mypy --strict, the import contracts (lint-imports), rustfmt and clippy
	$(BIN)/ruff check streamer api tests bench
	$(BIN)/ruff format --check streamer api tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cargo fmt --manifest-path native/Cargo.toml --check
	cargo clippy --quiet --manifest-path native/Cargo.toml --release -- -D warnings

bench: install kafka-install ## Measure throughput, latency, memory, restart and API speed (not part of test)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
		{ echo "bench: wrk is needed for the API figures (apt-get install wrk)"; exit 1; }
	@$(call with_kafka,PATH=$(BIN):$$PATH $(BIN)/python -m bench.run $(BENCH_ARGS))

demo: install kafka-up ## Start Kafka, a simulator with 35 days of history, the worker and the API; follow the alerts
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.worker.topics
	@# History first, as fast as possible, then real time: the worker starts once the history is in
	@# Kafka, so it reads it as a backlog on event time (see "Simulator" in the README).
	@$(PROC) status simulator || rm -f .local/run/simulator.log
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(PROC) start simulator $(BIN)/python -m streamer.simulate \
		--accounts $(DEMO_ACCOUNTS) --start-days-ago $(DEMO_HISTORY_DAYS) --speed 0
	@for _ in $$(seq 1 240); do \
		grep -q "caught up with the wall clock" .local/run/simulator.log 2>/dev/null && break; \
		$(PROC) status simulator || { tail -20 .local/run/simulator.log; exit 1; }; \
		sleep 0.5; \
	done; grep -h "caught up with the wall clock" .local/run/simulator.log | tail -1
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) CHURNWATCH_RULES_FILE=deploy/rules.demo.toml \
		CHURNWATCH_METRICS_PORT=$(WORKER_METRICS_PORT) $(PROC) start worker $(BIN)/python -m streamer
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) \
		CHURNWATCH_API_KEYS="$$($(BIN)/python -m api.keys --name demo --config-for .local/demo-api-key)" \
		$(PROC) start api $(BIN)/python -m api --port $(API_PORT)
	@$(BIN)/python -m streamer.waitfor http://127.0.0.1:$(API_PORT)/healthz http://127.0.0.1:$(WORKER_METRICS_PORT)/metrics
	@echo
	@echo "churnwatch is up:"
	@echo "  dashboard      http://127.0.0.1:$(API_PORT)/dashboard#key=$$(cat .local/demo-api-key)"
	@echo "                 (or open http://127.0.0.1:$(API_PORT)/dashboard and paste the demo key)"
	@echo "  demo API key   $$(cat .local/demo-api-key)   (Authorization: Bearer <key>)"
	@echo "  API docs       http://127.0.0.1:$(API_PORT)/docs   (liveness: /healthz)"
	@echo "  Segment SDKs   host http://127.0.0.1:$(API_PORT), write key: the demo key (README: Segment and RudderStack SDKs)"
	@echo "  try            curl -H \"Authorization: Bearer $$(cat .local/demo-api-key)\" '127.0.0.1:$(API_PORT)/v1/accounts?band=poor'"
	@echo "  worker metrics http://127.0.0.1:$(WORKER_METRICS_PORT)/metrics   (API metrics: /metrics on the API port)"
	@echo "  logs           .local/run/{worker,api,simulator}.log   (Kafka: deploy/kafka/kafka.sh logs)"
	@echo "  stop with      make down"
	@echo
	@echo "$(DEMO_ACCOUNTS) simulated accounts with $(DEMO_HISTORY_DAYS) days of history: some decay, some stop"
	@echo "and cancel, some come back. The worker is catching up on that history now; its alerts arrive"
	@echo "within about a minute. The simulation then goes on in real time."
	@echo
	@if [ "$(DEMO_WATCH)" != "0" ]; then CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.watch --from-beginning; fi

watch: ## Follow the alerts in this terminal
	@CHURNWATCH_KAFKA_BOOTSTRAP=$(BOOTSTRAP) $(BIN)/python -m streamer.watch --from-beginning

down: ## Stop everything demo started (API, worker, Kafka)
	@$(PROC) stop simulator
	@$(PROC) stop api
	@$(PROC) stop worker
	@$(KAFKA) stop

demo-reset: down ## Stop the demo and delete the local broker's data, the worker's and the API's state and the logs
	rm -rf .local/kafka/data-$(KAFKA_PORT) .local/worker .local/api .local/run
