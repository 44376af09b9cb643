from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.actions import get_or_create_knowledge_base, source_for_location, sync_source
from knowledge.models import KnowledgeBase, Source

DATA = Path(__file__).parent / "data"


@pytest.fixture
def kb(db) -> KnowledgeBase:
    return get_or_create_knowledge_base("shop", "Shop")


@pytest.fixture
def write_faq(tmp_path):
    """Write JSONL FAQ rows to a file (same name each call, like re-uploading an edited file)."""
    import json

    def write(rows: list[dict], name: str = "faq.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture
def ingest(kb):
    def run(path: Path) -> tuple[Source, object]:
        source = source_for_location(kb, str(path))
        return source, sync_source(source)

    return run
