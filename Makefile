# The two commands: `make run` (a local cluster on the embedded file:// store)
# and `make test` (the suite). Each sets up .venv on first use.
.PHONY: run test venv lint typecheck bench spike clean

venv:
	@./scripts/venv.sh

# Broker i listens on KAFKA_PORT+i and serves admin HTTP on HTTP_PORT+i: make run BROKERS=2 KAFKA_PORT=29092 HTTP_PORT=29644
run: venv
	.venv/bin/floe local up --brokers $${BROKERS:-3} --kafka-port $${KAFKA_PORT:-9092} --http-port $${HTTP_PORT:-9644}

test: venv
	.venv/bin/ruff check api broker cli operator tests benchmarks e2e
	.venv/bin/mypy
	.venv/bin/mypy e2e/spike.py
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q $${PYTEST_ARGS:-}

lint: venv
	.venv/bin/ruff check api broker cli operator tests benchmarks e2e

typecheck: venv
	.venv/bin/mypy
	.venv/bin/mypy e2e/spike.py

bench: venv
	.venv/bin/python benchmarks/produce_consume.py

# The elastic-scaling scenario: writes docs/spike.csv and docs/spike.png; last line is JSON.
spike: venv
	.venv/bin/python e2e/spike.py $${SPIKE_ARGS:-}

clean:
	rm -rf .floe .pytest_cache .mypy_cache .ruff_cache

# Scenario 1 on a real control plane (no Docker): builds kube-apiserver,
# kube-controller-manager and etcd from source once (e2e/k8s/build.sh, cached in
# ~/.cache/floe/k8s-bin), then runs e2e/k8s/test_install.py.
.PHONY: e2e-k8s
e2e-k8s: venv
	e2e/k8s/build.sh
	.venv/bin/python -m pytest -q -p no:cacheprovider e2e/k8s $${PYTEST_ARGS:-}

# The soak (tests/reliability/soak.py): a 3-broker cluster under idempotent, transactional and
# consumer-group load for SOAK_MINUTES (default 30) with rebalances and random faults, then the
# history checker SOAK_CHECKER_RUNS times (default 10). SOAK_SEED=N replays a run's schedule.
.PHONY: soak
soak: venv
	.venv/bin/python -m tests.reliability.soak
