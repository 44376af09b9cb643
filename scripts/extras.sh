#!/usr/bin/env bash
# Installs an optional extra into .venv once: `scripts/extras.sh llamacpp`.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="$1"
file="requirements-$extra.txt"
[ -f "$file" ] || { echo "error: no optional extra '$extra' ($file missing)" >&2; exit 1; }
stamp=".venv/.extra-$extra-$(sha256sum "$file" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing the optional extra '$extra' (llama-cpp-python compiles for ~14 minutes the first time)"
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$file"
  rm -f .venv/.extra-"$extra"-*
  touch "$stamp"
fi
