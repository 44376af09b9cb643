"""Redacted training data for fine-tuning a language model, in two layouts.

- ``chat/{train,validation}.jsonl``: OpenAI chat fine-tuning format, one ``{"messages": [...]}`` a line.
- ``hf/``: a Hugging Face dataset folder, ``train.jsonl`` + ``validation.jsonl`` + a dataset card
  (``README.md``); ``datasets.load_dataset("json", data_dir=".../hf")`` loads both splits.
The validation split is the held-out slice (the gate's conversations). ``manifest.json`` records what an
export was made from, so that an erasure can write it again without the erased customer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from chat.texts import text as say
from knowledge.models import KnowledgeBase
from learning.models import LabelledExample, RetrainingJob, Split

SYSTEM_PROMPT = (
    "You are the customer-support assistant of {company}. Answer only from the company's knowledge base, "
    "in the customer's language; when it does not cover the question, hand the customer to a person."
)


def exports_root() -> Path:
    return Path(settings.DATA_DIR) / "learning" / "exports"


def job_folder(job: RetrainingJob) -> Path:
    return exports_root() / job.knowledge_base.slug / f"job-{job.pk}"


def _rows(kb: KnowledgeBase, up_to_pk: int | None) -> dict[str, list[dict[str, Any]]]:
    labels = (
        LabelledExample.objects.filter(
            knowledge_base=kb, kind__in=[LabelledExample.Kind.POSITIVE, LabelledExample.Kind.OUT_OF_SCOPE]
        )
        .exclude(status=LabelledExample.Status.REJECTED)
        .select_related("entry")
        .order_by("pk")
    )
    if up_to_pk is not None:
        labels = labels.filter(pk__lte=up_to_pk)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    seen: set[tuple[str, int | None]] = set()
    for label in labels:
        if (label.text, label.entry_id) in seen:
            continue
        seen.add((label.text, label.entry_id))
        language = label.language or kb.default_language
        answer = label.entry.answer_in(language)[1] if label.entry else say("waiting", language)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT.format(company=kb.name)},
            {"role": "user", "content": label.text},
            {"role": "assistant", "content": answer},
        ]
        splits["validation" if label.split == Split.HOLDOUT else "train"].append(
            {
                "id": label.pk,
                "text": label.text,
                "label": label.entry.key if label.entry else None,
                "entry_id": label.entry_id,
                "kind": label.kind,
                "language": language,
                "rule": label.rule,
                "answer": answer,
                "messages": messages,
            }
        )
    return splits


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


CARD = """---
language:
- es
- en
task_categories:
- text-classification
- text-generation
configs:
- config_name: default
  data_files:
  - split: train
    path: train.jsonl
  - split: validation
    path: validation.jsonl
---

# {name}: labelled customer questions

Customer questions from support conversations of **{name}** (knowledge base `{slug}`), labelled with the
FAQ entry that answers them (`label`, `entry_id`) or as not covered (`kind: out_of_scope`, `label: null`).
Personal data (e-mail, phone, card, IBAN, DNI/NIE, addresses, names) is replaced by placeholders such as
`[EMAIL]`. `rule` says how each label was derived (feedback, agent resolution, ...). `messages` holds the
same row in chat fine-tuning form. `validation` is the held-out slice the promotion gate uses.

Rows: train {train}, validation {validation}. Exported {exported_at}.

```python
from datasets import load_dataset
data = load_dataset("json", data_dir="path/to/this/folder")
```
"""


def export_dataset(kb: KnowledgeBase, folder: Path, up_to_pk: int | None = None) -> Path:
    """Write both layouts of ``kb``'s labelled questions (those with a primary key up to ``up_to_pk``)."""
    if up_to_pk is None:
        up_to_pk = LabelledExample.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    splits = _rows(kb, up_to_pk)
    for split, rows in splits.items():
        _write_jsonl(folder / "chat" / f"{split}.jsonl", [{"messages": row["messages"]} for row in rows])
        _write_jsonl(folder / "hf" / f"{split}.jsonl", rows)
    card = CARD.format(
        name=kb.name,
        slug=kb.slug,
        train=len(splits["train"]),
        validation=len(splits["validation"]),
        exported_at=timezone.now().isoformat(timespec="seconds"),
    )
    (folder / "hf" / "README.md").write_text(card, encoding="utf-8")
    manifest = {
        "knowledge_base": kb.slug,
        "up_to_label": up_to_pk,
        "rows": {split: len(rows) for split, rows in splits.items()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def rewrite_all() -> int:
    """Write every export again from the current data (after an erasure); returns how many were rewritten."""
    count = 0
    root = exports_root()
    if not root.is_dir():
        return 0
    for manifest_path in sorted(root.glob("*/*/manifest.json")):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        kb = KnowledgeBase.objects.filter(slug=manifest.get("knowledge_base")).first()
        if kb is None:
            continue
        export_dataset(kb, manifest_path.parent, manifest.get("up_to_label"))
        count += 1
    return count
