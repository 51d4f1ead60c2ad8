# The two commands a newcomer needs:
#   make run   - the portal in embedded mode (SQLite, local files, demo data) on http://127.0.0.1:8000
#   make test  - set up and run the whole test suite (lint, migrations check, pytest)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint services browser venv bench-webhook bench-taskrouter bench-url-provider bench-media bench-archive bench-audit-append bench-waveform bench-holds bench-hold-cases bench-admin-scale clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The demo talks to the project's fake Twilio (tokens demo-supervisor-token, demo-agent-token).
DEMO_ENV := DJANGO_DEBUG=1 TWILIO_ACCOUNT_SID=ACdddddddddddddddddddddddddddddddd \
	TWILIO_AUTH_TOKEN=demo0000000000000000000000000000 \
	TWILIO_API_OVERRIDE=http://127.0.0.1:8799 \
	PUBLIC_BASE_URL=http://127.0.0.1:8000 \
	TWILIO_WORKSPACE_SID=WSdddddddddddddddddddddddddddddddd

run: $(STAMP)
	mkdir -p var
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	@# The fake first: seed_demo reads the demo's Flex directory from it and writes the demo
	@# recording into the demo task's attributes there.
	@# run_periodic_work stands in for celery beat and the worker (no broker in embedded mode):
	@# seals, the nightly check and playback summaries run in the demo too (var/periodic-work.log).
	@$(DEMO_ENV) bash -c '$(PY) manage.py run_fake_twilio --port 8799 --demo >var/fake-twilio.log 2>&1 & \
	  fake=$$!; periodic=; stop() { kill $$fake $$periodic 2>/dev/null; }; trap stop EXIT; \
	  $(PY) manage.py seed_demo --wait-for-twilio 10 || exit 1; \
	  $(PY) manage.py run_periodic_work --run-first >var/periodic-work.log 2>&1 & periodic=$$!; \
	  $(PY) manage.py runserver 127.0.0.1:8000'


# PostgreSQL and Redis on this machine; started when they are down.
services:
	@bash .ci/services.sh

# Debian's Chromium for the browser tests; installed when missing.
browser:
	@bash .ci/browser.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	DJANGO_DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=lint-only-$$(date +%s)-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH \
	  DJANGO_ALLOWED_HOSTS=portal.example.com PORTAL_MASTER_KEY=$$($(PY) -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
	  AUDIT_SEAL_SIGNING_KEY=$$($(PY) -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
	  AUDIT_ROW_MAC_KEY=$$($(PY) -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())") \
	  $(PY) manage.py check --deploy --fail-level WARNING

test: $(STAMP) services browser lint
	$(VENV)/bin/pytest -n 2 --create-db

bench-webhook: $(STAMP) services
	$(PY) bench/webhook.py

bench-taskrouter: $(STAMP) services
	$(PY) bench/taskrouter_events.py

bench-url-provider: $(STAMP) services
	$(PY) bench/url_provider.py

bench-archive: $(STAMP) services
	$(PY) bench/archive.py

bench-audit-append: $(STAMP) services
	$(PY) bench/audit_append.py

bench-media: $(STAMP) services
	$(PY) bench/media.py

bench-waveform: $(STAMP)
	$(PY) bench/waveform.py

bench-holds: $(STAMP) services
	$(PY) bench/legal_holds.py

bench-hold-cases: $(STAMP) services
	$(PY) bench/hold_cases.py

bench-admin-scale: $(STAMP) services
	$(PY) bench/admin_scale.py

clean:
	rm -rf $(VENV) db.sqlite3 media var
