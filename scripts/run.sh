#!/usr/bin/env bash
# The product on one machine: installs, starts the Chroma server on loopback, migrates, loads the demo
# knowledge base, then runs the web server (ASGI, uvicorn) and a Celery worker with beat in the
# foreground. Ctrl-C stops them all.
#
# One owner per store: Chroma's on-disk client is not safe across processes, so the folder is served by
# Chroma's own server (shipped in the chromadb package) and web, worker and every command are its
# clients. Its URL is written to <CHROMA_PATH>.url, where commands started in another shell find it;
# set CHROMA_URL to use a Chroma server of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export LOG_FORMAT="${LOG_FORMAT:-text}"
host="${HOST:-127.0.0.1}"
port="${PORT:-8000}"
py=.venv/bin/python

pids=()
chroma_url_file=""
stop() {
  trap - INT TERM EXIT
  echo; echo "==> stopping"
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  [ -n "$chroma_url_file" ] && rm -f "$chroma_url_file"
}
trap stop INT TERM EXIT

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if [ -z "${CHROMA_URL:-}" ]; then
  data_dir="${DATA_DIR:-var}"
  chroma_path="${CHROMA_PATH:-$data_dir/chroma}"
  mkdir -p "$(dirname "$chroma_path")"
  # The same lock the on-disk client takes (knowledge/vectorstore.py): one owner of the folder at a time.
  exec 9<>"$chroma_path.lock"
  if ! flock -n 9; then
    echo "error: the Chroma folder $chroma_path is open in $(cat "$chroma_path.lock" 2>/dev/null || echo 'another process');" \
      "stop that first" >&2
    exit 1
  fi
  echo "the Chroma server of make run (script pid $$)" >"$chroma_path.lock"
  chroma_port="${CHROMA_PORT:-8001}"
  if ! port_is_free "$chroma_port"; then
    chroma_port=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  echo "==> starting the Chroma server on 127.0.0.1:$chroma_port ($chroma_path)"
  RUST_LOG="${CHROMA_LOG:-warn}" .venv/bin/chroma run --path "$chroma_path" --host 127.0.0.1 --port "$chroma_port" \
    >"$data_dir/chroma.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    port_is_free "$chroma_port" || break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
      echo "error: the Chroma server exited; see $data_dir/chroma.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if port_is_free "$chroma_port"; then
    echo "error: the Chroma server did not start within 30 s; see $data_dir/chroma.log" >&2
    exit 1
  fi
  export CHROMA_URL="http://127.0.0.1:$chroma_port"
  chroma_url_file="$chroma_path.url"
  echo "$CHROMA_URL" >"$chroma_url_file"
fi

$py manage.py migrate --noinput
$py manage.py setup_demo

# 9>&-: only the Chroma server keeps the folder's lock.
.venv/bin/celery -A support worker --beat --loglevel INFO --concurrency 1 \
  --without-mingle --without-gossip --schedule var/celerybeat-schedule 9>&- &
pids+=($!)
.venv/bin/uvicorn support.asgi:application --host "$host" --port "$port" --no-access-log --timeout-graceful-shutdown 5 9>&- &
pids+=($!)

sleep 2
cat <<MSG

  Support bot is running.
    Widget demo page : http://$host:$port/demo/
    Admin (agents/ops): http://$host:$port/admin/   (logins above)
    Health            : http://$host:$port/healthz
    Vector store      : $CHROMA_URL (commands in another shell use it too)
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
