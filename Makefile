# The two commands a newcomer needs: `make run` and `make test`. Both create the
# virtualenv and install the pinned requirements when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
# Wheels a host needs to install the built rivya-api wheel without the network (tests/packaging).
WHEELHOUSE := var/wheelhouse

.PHONY: run test test-fast lint stress serve openapi stack bench sdk sdk-pack faults soak

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

## Migrate, create the demo account and key, and serve on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@$(BIN)/python manage.py rivya_demo
	$(BIN)/uvicorn config.asgi:application --host 127.0.0.1 --port 8000 --no-access-log

## Production-shaped: PostgreSQL + Redis, gunicorn/uvicorn workers, Celery worker and beat (docs/operations.md, "Production stack")
stack: $(STAMP)
	$(BIN)/python bin/stack

## Benchmark suite against PostgreSQL + Redis: prints one table, writes bench/results.json (docs/benchmarks.md)
bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk: run .ci/install-system-packages"; exit 2; }
	$(BIN)/python bench/run.py

$(WHEELHOUSE)/.complete: $(STAMP) requirements.txt pyproject.toml
	$(BIN)/python tests/packaging/wheelhouse.py $(WHEELHOUSE)
	touch $@

## Every test tier this machine can run (services it lacks are skipped with a reason)
test: $(STAMP) $(WHEELHOUSE)/.complete
	$(BIN)/lint-imports --no-cache  # the apps' one-way dependency rule ([tool.importlinter] in pyproject.toml)
	$(BIN)/pytest
	$(BIN)/pytest --ds=tests.orghost.settings -m "not browser and not node and not slow" tests/rivya_api tests/rivya_billing tests/rivya_webhooks
	# The embedded configuration's own fast paths (SQLite; marked `sqlite`, deselected above when DATABASE_URL is PostgreSQL)
	env -u DATABASE_URL -u REDIS_URL $(BIN)/pytest tests/rivya_api/chat/test_sqlite_commit.py tests/rivya_api/chat/test_sqlite_finish.py tests/rivya_billing/test_sqlite_holds.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Long concurrency repeats (RIVYA_STRESS_REPEATS, default 20)
stress: $(STAMP)
	RIVYA_STRESS_REPEATS=$${RIVYA_STRESS_REPEATS:-20} $(BIN)/pytest -m stress

# The fault suite starts its own PostgreSQL cluster and Redis server (needs their binaries, not running
# servers); these URLs only satisfy the tests' postgres/redis markers.
FAULT_ENV := DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rivya} REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0}

## Fault tests (docs/testing.md, "Fault and soak tests"): processes, Redis and PostgreSQL killed under load, schemathesis, upload fuzz, soak
faults: $(STAMP)
	$(FAULT_ENV) $(BIN)/pytest tests/faults -s

## The soak alone, two minutes by default (RIVYA_SOAK_SECONDS, RIVYA_SOAK_RATE requests/s)
soak: $(STAMP)
	$(FAULT_ENV) RIVYA_SOAK_SECONDS=$${RIVYA_SOAK_SECONDS:-120} $(BIN)/pytest tests/faults/test_soak.py -s

## Regenerate the committed OpenAPI snapshot after an intended change to the API
openapi: $(STAMP)
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --format openapi-json --file tests/rivya_api/openapi.snapshot.json
	@if command -v node >/dev/null 2>&1; then RIVYA_PYTHON=$(abspath $(BIN))/python scripts/sdk-test.sh --types; \
	else echo "Node.js not found: run 'make openapi' where Node.js 20+ is installed to regenerate sdk/typescript's types"; fi

## TypeScript SDK (sdk/typescript): regenerate its types from the OpenAPI document, build, test
sdk: $(STAMP)
	RIVYA_PYTHON=$(abspath $(BIN))/python scripts/sdk-test.sh

## The TypeScript SDK as an npm package, sdk/typescript/rivya-sdk.tgz: `npm install /path/to/it` (needs Node.js 20+ only)
sdk-pack:
	scripts/sdk-test.sh --pack
