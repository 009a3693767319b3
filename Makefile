# Tenx: two commands do all the set-up on a fresh machine.
#   make up     install everything, start the whole local stack, print the URLs
#   make test   lint, then every test layer against the real stack
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
STACK := deploy/local/stack
export TENX_CACHE ?= /var/cache/tenx
export UV_CACHE_DIR := $(TENX_CACHE)/uv
export UV_PYTHON_DOWNLOADS := never
UV := $(TENX_CACHE)/tools/bin/uv
RUN := $(UV) run --locked --no-sync
PYTEST := set -a; source .state/local.env; set +a; $(RUN) pytest
PROMTOOL := $(TENX_CACHE)/bin/promtool-$(shell sed -n 's/^PROMTOOL_VERSION=\([^ ]*\).*/\1/p' deploy/local/versions.env)

.PHONY: up down status logs install lint fmt test test-unit test-slo k8s-validate test-integration \
	test-e2e test-security test-fuzz test-failover test-restore test-chaos test-down fuzz chaos failover-drill backup backups \
	restore restore-drill bench bench-orders bench-pooler schemas slo trace images smoke

up:
	$(STACK) up

down:
	$(STACK) down

status:
	@$(STACK) status

logs:
	@$(STACK) logs $(S)

install:
	$(STACK) install

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs services tests bench

fmt:
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# Regenerate schemas/events from the event models (tests/unit checks them).
schemas: install
	$(RUN) python -m tenx_tools.event_schemas write

# Every layer, in order; the last one stops the stack and checks nothing is left.
test: lint test-unit test-slo k8s-validate up test-integration test-e2e test-security test-fuzz test-restore test-failover test-chaos test-down

test-unit: install
	$(RUN) pytest tests/unit -q

# The SLO rules: generated from tenx_tools/slo.py, valid, and their alerts
# fire when (and only when) their unit tests say (promtool, built by install).
test-slo: install
	$(RUN) python -m tenx_tools.slo check
	$(PROMTOOL) check rules deploy/observability/slo-rules.yml
	cd deploy/observability && $(PROMTOOL) test rules slo-rules.test.yml

# deploy/k8s, offline: kustomize (built by install) renders every overlay; the
# objects are validated strictly against the pinned Kubernetes schemas, then
# held to the policies in tests/deploy (probes, limits, security, settings,
# network flows, routes); the Dockerfile is checked and its build rehearsed.
k8s-validate: install
	$(RUN) pytest tests/deploy -q

# The services' images, for a cluster (needs Docker; docs/deploy.md): one
# Dockerfile, given each service's names (search-indexer: tenx-search-indexer,
# tenx_search_indexer, TENX_SEARCH_INDEXER).
IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images:
	@command -v docker >/dev/null || { echo "make images: docker is not installed here" >&2; exit 1; }
	for service in api auth notify search-indexer; do \
	  module=tenx_$${service//-/_}; \
	  docker build -f Dockerfile --build-arg SERVICE=$$service --build-arg PACKAGE=tenx-$$service \
	    --build-arg MODULE=$$module --build-arg ENV_PREFIX=$${module^^} \
	    -t tenx/$$service:$(IMAGE_TAG) . ; \
	done

slo: install
	$(RUN) python -m tenx_tools.slo write

# make smoke [URL=http://127.0.0.1:8080]: the public API end to end (an order
# confirmed, searchable, in the feed); a cluster's admin password in
# TENX_SMOKE_ADMIN_PASSWORD (docs/deploy.md), the local stack's by default.
smoke: install
	@set -a; if [[ -f .state/local.env ]]; then source .state/local.env; fi; set +a; \
	TENX_SMOKE_ADMIN_PASSWORD=$${TENX_SMOKE_ADMIN_PASSWORD:-$${TENX_AUTH_ADMIN_PASSWORD:-}} \
	  $(RUN) python -m tenx_tools.smoke $(URL)

# make trace ID=<trace id | order id>: the trace from Jaeger, as a tree.
trace:
	@$(RUN) python -m tenx_tools.traces $(ID)

test-integration: up
	$(PYTEST) tests/integration -q

test-e2e: up
	$(PYTEST) tests/e2e -q

# The OWASP API Security Top 10 (2023), one module per item that applies.
test-security: up
	$(PYTEST) tests/security -q

# schemathesis against every service's OpenAPI document through the edge
# (schemathesis.toml): make fuzz runs 25 examples per operation, CI 3.
fuzz: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.fuzz $(or $(EXAMPLES),25)

test-fuzz: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.fuzz 3

# Orders through the edge while each component is killed (SIGKILL) and
# started again, then every invariant checked (tests/tools/chaos.py): make chaos
# runs 10,000 orders and every kill, CI 500 orders and three kills.
chaos: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.chaos $(or $(ORDERS),10000)

# Backups (pgBackRest, docs/data-tier.md): make backup [TYPE=full|diff|incr],
# make backups (the list), make restore TIME="2026-12-02 10:00:00" (into a
# scratch cluster on :5499, compared with the live one), make restore-drill.
backup: up
	$(STACK) backup $(or $(TYPE),incr)

backups:
	@$(STACK) backups

restore:
	$(STACK) restore "$(TIME)"

# Orders, a noted time, more orders; the cluster restored to the noted time
# must hold exactly the orders before it (tests/tools/restore_drill.py): RPO, RTO.
restore-drill: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.restore_drill $(if $(RECORD),--record)

test-restore: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.restore_drill

# The PostgreSQL primary lost under order load (tests/tools/failover.py): the time
# until writes succeed again, acknowledged orders lost (0), what clients were
# answered meanwhile, the old primary back as a replica, and the price of
# synchronous replication. make failover-drill runs 3,000 orders and records
# bench/results/failover.json; CI 400.
failover-drill: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.failover $(or $(ORDERS),3000) --record

test-failover: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.failover 400

test-chaos: up
	set -a; source .state/local.env; set +a; $(RUN) python -m tests.tools.chaos 500 3

test-down:
	$(RUN) pytest tests/down -q

# Every benchmark in one go (tens of minutes; the stack must be quiet), then one
# report: bench/results/report.md, report.json, throughput.png, latency.png.
BENCH := set -a; source .state/local.env; set +a; $(RUN) python -m
bench: up
	$(BENCH) bench.edge_overhead
	$(BENCH) bench.auth
	$(BENCH) bench.api_throughput
	$(BENCH) bench.event_pipeline
	$(BENCH) bench.notify
	$(BENCH) bench.search
	$(BENCH) bench.tracing
	$(BENCH) bench.orders
	$(BENCH) bench.pooler
	$(RUN) python -m bench.report

# The whole order pipeline under load with its same-run limits (bench/orders.py;
# about 12 minutes): bench/results/orders.json. QUICK=1: a few minutes, for
# iterating (bench/results/orders-quick.json).
bench-orders: up
	$(BENCH) bench.orders $(if $(QUICK),--quick)

# pgbench of one placement's SQL, direct and through PgBouncer, at 64 and 500
# clients (bench/pooler.py; about 2 minutes): bench/results/pooler.json.
bench-pooler: up
	$(BENCH) bench.pooler