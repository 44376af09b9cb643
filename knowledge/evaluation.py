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
    answered_id: str | None  # None = not answered directly
    reason: str  # "answer", "choices" or the hand-over reason
    latency_ms: float
    offered: tuple[str, ...] = ()  # the entries offered as choices, if any

    @property
    def picked(self) -> str | None:
        """The simulated customer picks the right entry when it is offered, else "none of these" (None)."""
        return self.query.faq_id if self.query.faq_id is not None and self.query.faq_id in self.offered else None


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
    """The EVAL.md figures for these outcomes: direct answers, choices, and who ends with a person."""
    in_scope = [o for o in outcomes if o.query.faq_id is not None]
    handoff = [o for o in outcomes if o.query.faq_id is None and o.query.kind == "handoff_request"]
    oos = [o for o in outcomes if o.query.faq_id is None and o.query.kind != "handoff_request"]
    answered = [o for o in outcomes if o.answered_id is not None]
    wrong = [o for o in answered if o.answered_id != o.query.faq_id]
    direct = sum(1 for o in in_scope if o.answered_id == o.query.faq_id)
    chosen = sum(1 for o in in_scope if o.answered_id is None and o.picked is not None)
    return {
        "auto_resolution": _fraction(direct, len(in_scope)),
        "choice_resolution": _fraction(chosen, len(in_scope)),
        "total_resolution": _fraction(direct + chosen, len(in_scope)),
        "choice_rate": _fraction(sum(1 for o in outcomes if o.offered), len(outcomes)),
        "wrong_answer_rate": _fraction(len(wrong), len(answered)) if answered else (0.0 if outcomes else None),
        # choices end with a person when the customer picks "none of these": only a direct answer keeps them away
        "oos_recall": _fraction(sum(1 for o in oos if o.answered_id is None), len(oos)),
        "handoff_recall": _fraction(sum(1 for o in handoff if o.answered_id is None), len(handoff)),
        "handoff_reason_recall": _fraction(sum(1 for o in handoff if o.reason == "human_request"), len(handoff)),
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
    others = [o for o in outcomes if o.query.kind != "handoff_request"]
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
            "human_request_false_positive_rate": _fraction(
                sum(1 for o in others if o.reason == "human_request"), len(others)
            ),
            "config": config,
        }
    )
    return result


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{value * 100:5.1f}%"


def table(result: dict[str, Any]) -> str:
    header = ("slice", "n", "auto", "choice", "total", "wrong", "choices", "oos-rec", "handoff", "as-human")
    lines = [f"{header[0]:<22}{header[1]:>6}" + "".join(f"  {h:>8}" for h in header[2:])]
    rows = [("all", result)]
    rows += [(f"lang={name}", fig) for name, fig in result["per_lang"].items()]
    rows += [(f"kind={name}", fig) for name, fig in result["per_kind"].items()]
    keys = ("auto_resolution", "choice_resolution", "total_resolution", "wrong_answer_rate", "choice_rate",
            "oos_recall", "handoff_recall", "handoff_reason_recall")  # fmt: skip
    for name, fig in rows:
        lines.append(f"{name:<22}{fig['n']:>6}" + "".join(f"  {_pct(fig[key]):>8}" for key in keys))
    return "\n".join(lines)


def summary_line(result: dict[str, Any]) -> str:
    return (
        f"SUMMARY n={result['n']} auto_resolution={_pct(result['auto_resolution']).strip()} "
        f"choice_resolution={_pct(result['choice_resolution']).strip()} "
        f"total_resolution={_pct(result['total_resolution']).strip()} "
        f"wrong_answer_rate={_pct(result['wrong_answer_rate']).strip()} "
        f"choice_rate={_pct(result['choice_rate']).strip()} "
        f"oos_recall={_pct(result['oos_recall']).strip()} "
        f"handoff_recall={_pct(result['handoff_recall']).strip()} "
        f"handoff_reason_recall={_pct(result['handoff_reason_recall']).strip()} "
        f"threshold={result['threshold']:.3f} choice_threshold={result.get('choice_threshold', 1.0):.3f} "
        f"p50={result['latency_ms']['p50']}ms p95={result['latency_ms']['p95']}ms "
        f"index={result['index_docs_per_s']}docs/s"
    )
