"""Figures for ``manage.py evaluate`` (contract: shared/docs/EVAL.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    faq_id: str | None
    lang: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Outcome:
    query: LabelledQuery
    answered_id: str | None  # None = escalated
    reason: str
    latency_ms: float


def read_queries(path: Path) -> list[LabelledQuery]:
    rows: list[LabelledQuery] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append(
                    LabelledQuery(
                        text=str(row["text"]),
                        faq_id=None if row.get("faq_id") is None else str(row["faq_id"]),
                        lang=str(row.get("lang") or ""),
                        kind=str(row.get("kind") or ""),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} line {number}: not a query row ({exc})") from exc
    return rows


def _fraction(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """auto_resolution, wrong_answer_rate, oos_recall, handoff_recall and n for these outcomes."""
    in_scope = [o for o in outcomes if o.query.faq_id is not None]
    handoff = [o for o in outcomes if o.query.faq_id is None and o.query.kind == "handoff_request"]
    oos = [o for o in outcomes if o.query.faq_id is None and o.query.kind != "handoff_request"]
    answered = [o for o in outcomes if o.answered_id is not None]
    wrong = [o for o in answered if o.answered_id != o.query.faq_id]
    return {
        "auto_resolution": _fraction(sum(1 for o in in_scope if o.answered_id == o.query.faq_id), len(in_scope)),
        "wrong_answer_rate": _fraction(len(wrong), len(answered)) if answered else (0.0 if outcomes else None),
        "oos_recall": _fraction(sum(1 for o in oos if o.answered_id is None), len(oos)),
        "handoff_recall": _fraction(sum(1 for o in handoff if o.answered_id is None), len(handoff)),
        "n": len(outcomes),
    }


def _split(outcomes: Iterable[Outcome], attribute: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        name = getattr(outcome.query, attribute)
        if name:
            groups.setdefault(name, []).append(outcome)
    return {name: figures(group) for name, group in sorted(groups.items())}


def report(outcomes: Sequence[Outcome], threshold: float, index_docs_per_s: float, config: dict[str, Any]) -> dict:
    latencies = np.array([o.latency_ms for o in outcomes]) if outcomes else np.zeros(1)
    handoff = [o for o in outcomes if o.query.kind == "handoff_request"]
    paraphrase = [o for o in outcomes if o.query.kind == "paraphrase"]
    result = figures(outcomes)
    result.update(
        {
            "threshold": threshold,
            "per_lang": _split(outcomes, "lang"),
            "per_kind": _split(outcomes, "kind"),
            "latency_ms": {
                "p50": round(float(np.percentile(latencies, 50)), 2),
                "p95": round(float(np.percentile(latencies, 95)), 2),
            },
            "index_docs_per_s": round(index_docs_per_s, 1),
            "handoff_reason_recall": _fraction(sum(1 for o in handoff if o.reason == "human_request"), len(handoff)),
            "human_request_false_positive_rate": _fraction(
                sum(1 for o in paraphrase if o.reason == "human_request"), len(paraphrase)
            ),
            "config": config,
        }
    )
    return result


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{value * 100:5.1f}%"


def table(result: dict[str, Any]) -> str:
    lines = [f"{'slice':<22}{'n':>6}  {'auto-res':>8}  {'wrong':>7}  {'oos-rec':>7}  {'handoff':>7}"]
    rows = [("all", result)]
    rows += [(f"lang={name}", fig) for name, fig in result["per_lang"].items()]
    rows += [(f"kind={name}", fig) for name, fig in result["per_kind"].items()]
    for name, fig in rows:
        lines.append(
            f"{name:<22}{fig['n']:>6}  {_pct(fig['auto_resolution']):>8}  {_pct(fig['wrong_answer_rate']):>7}  "
            f"{_pct(fig['oos_recall']):>7}  {_pct(fig['handoff_recall']):>7}"
        )
    return "\n".join(lines)


def summary_line(result: dict[str, Any]) -> str:
    return (
        f"SUMMARY n={result['n']} auto_resolution={_pct(result['auto_resolution']).strip()} "
        f"wrong_answer_rate={_pct(result['wrong_answer_rate']).strip()} "
        f"oos_recall={_pct(result['oos_recall']).strip()} "
        f"handoff_recall={_pct(result['handoff_recall']).strip()} threshold={result['threshold']:.3f} "
        f"p50={result['latency_ms']['p50']}ms p95={result['latency_ms']['p95']}ms "
        f"index={result['index_docs_per_s']}docs/s"
    )
