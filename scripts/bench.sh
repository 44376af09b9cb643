#!/usr/bin/env bash
# All benchmark scripts; each prints its figures (the README shows recent ones).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cd benchmarks
../.venv/bin/python routing.py
../.venv/bin/python generalisation.py
../.venv/bin/python intents.py
../.venv/bin/python api.py --runs 50
if ../.venv/bin/python -c "import llama_cpp" 2>/dev/null; then ../.venv/bin/python api.py --runs 10 --backend llamacpp; fi
../.venv/bin/python agent_queue.py
../.venv/bin/python live.py
../.venv/bin/python learning_loop.py --set soportemax
../.venv/bin/python postcheck_rate.py --limit 20 || true
