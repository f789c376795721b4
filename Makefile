# YADTQ: `make run` (services, 3 workers, dashboard) and `make test` do all the set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKERS ?= 3

# the local stack for `make run` / `make services`
export YADTQ_KAFKA_PORT ?= 9092
export YADTQ_REDIS_PORT ?= 6379

.PHONY: help venv services cluster sentinel stop run web workers test test-cluster test-unit lint bench bench-peers bench-tui bench-profile chaos clean

help:
	@echo "make run        start Kafka + Redis, $(WORKERS) workers and the dashboard"
	@echo "make web        serve the dashboard to a browser (WEB_HOST=127.0.0.1 WEB_PORT=8000; a token off loopback)"
	@echo "make test       set everything up, start test services, run the whole suite"
	@echo "make test-cluster  only the 3-node Kafka cluster tests (tests/cluster; a few minutes)"
	@echo "make services   start the local Kafka (127.0.0.1:$(YADTQ_KAFKA_PORT)) and Redis (:$(YADTQ_REDIS_PORT))"
	@echo "make cluster    start a 3-node Kafka cluster (KRaft) on 127.0.0.1:19101-19103 (Redis: make services)"
	@echo "make sentinel   start a Redis primary, a replica and 3 Sentinels on loopback (scripts/sentinel.sh)"
	@echo "make stop       stop the workers started by make run, then Kafka, the cluster, Redis and Sentinel"
	@echo "make bench      pipeline, memory, scheduler and per-hop latency benchmarks (writes bench/results/)"
	@echo "make bench-peers  YADTQ side by side with Celery, RQ, Dramatiq, Huey, kq (ARGS=--quick)"
	@echo "make bench-profile  per-task CPU by component (py-spy: Kafka client, Redis client, framework, servers)"
	@echo "make chaos      the large fault-injection run (stops/starts the make-services Kafka and Redis)"
	@echo "make lint       ruff + mypy"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

services: $(STAMP)
	@PYTHON=$(PY) scripts/services.sh start

cluster: $(STAMP)
	@PYTHON=$(PY) scripts/cluster.sh start
	@echo "export YADTQ_KAFKA_BOOTSTRAP=$$(scripts/cluster.sh bootstrap)"

sentinel: $(STAMP)
	@scripts/sentinel.sh start

stop:
	@scripts/run-workers.sh stop || true
	@PYTHON=$(PY) scripts/cluster.sh stop
	@scripts/sentinel.sh stop 2>/dev/null || true
	@PYTHON=$(PY) scripts/services.sh stop

workers: services
	@scripts/run-workers.sh start $(WORKERS)

run: services
	@scripts/run-workers.sh start $(WORKERS)
	@trap 'scripts/run-workers.sh stop' EXIT INT TERM; $(VENV)/bin/yadtq-tui

web: $(STAMP)
	$(VENV)/bin/yadtq-tui --serve --host $(or $(WEB_HOST),127.0.0.1) --port $(or $(WEB_PORT),8000) $(ARGS)

test: $(STAMP)
	@scripts/test.sh

test-cluster: $(STAMP)
	@scripts/test.sh tests/cluster

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/deploy -q

lint: $(STAMP)
	$(VENV)/bin/ruff check yadtq worker yadtq_tui tests bench
	$(VENV)/bin/mypy

bench: services
	$(PY) bench/bench_floor.py
	$(PY) bench/bench_minqueue.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_schedule.py
	$(PY) bench/bench_latency.py
	$(PY) bench/bench_submit.py

chaos: services
	PYTHONPATH=. $(PY) -m tests.integration.chaos

bench-peers: services
	$(PY) -m pip install -q -e '.[peers]'
	$(PY) bench/bench_peers.py $(ARGS)

bench-tui: services
	$(PY) bench/bench_tui.py

bench-profile: services
	$(PY) -m pip install -q -e '.[profile]'
	$(PY) bench/breakdown.py $(ARGS)

clean: stop
	rm -rf .local scripts/kafka/target
