#!/usr/bin/env bash
# The product on one machine: installs, migrates, loads the demo knowledge base, then runs the
# web server (ASGI, uvicorn) and a Celery worker with beat in the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export LOG_FORMAT="${LOG_FORMAT:-text}"
host="${HOST:-127.0.0.1}"
port="${PORT:-8000}"
py=.venv/bin/python

$py manage.py migrate --noinput
$py manage.py setup_demo

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

.venv/bin/celery -A support worker --beat --loglevel INFO --concurrency 1 \
  --without-mingle --without-gossip --schedule var/celerybeat-schedule &
pids+=($!)
.venv/bin/uvicorn support.asgi:application --host "$host" --port "$port" --no-access-log &
pids+=($!)

sleep 2
cat <<MSG

  Support bot is running.
    Widget demo page : http://$host:$port/demo/
    Admin (agents/ops): http://$host:$port/admin/   (logins above)
    Health            : http://$host:$port/healthz
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
