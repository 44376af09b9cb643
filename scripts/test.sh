#!/usr/bin/env bash
# The whole test suite from scratch: Python deps, Debian packages, then pytest (the browser
# tests run in their own pytest process: Playwright's sync API and asyncio tests don't mix).
# The integration tests start the servers they need on loopback themselves: PostgreSQL and Redis
# (tests/conftest.py), the Chroma server from .venv/bin/chroma, uvicorn and Celery workers
# (tests/integration/product.py); they need only the Debian packages below.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/system-deps.sh
# The real llama.cpp test needs the optional extra (compiled once, then cached by pip).
scripts/extras.sh llamacpp

export DJANGO_SETTINGS_MODULE=support.settings
status=0
.venv/bin/pytest -m "not browser" "$@" || status=$?

browser_status=0
.venv/bin/pytest -m browser "$@" || browser_status=$?
# Exit code 5 is "no tests collected" (e.g. a -k filter that selects none of them).
[ "$browser_status" -eq 5 ] && browser_status=0
[ "$status" -eq 5 ] && status=0

if [ "$status" -ne 0 ] || [ "$browser_status" -ne 0 ]; then
  echo "tests failed (unit/integration: $status, browser: $browser_status)" >&2
  exit 1
fi
