"""The promotion gate: is the candidate better than the live version, and how sure is that?

Both versions answer the same questions (the held-out conversations, and each LEARNING_BENCHMARKS file), so
they are compared question by question (paired). For every question a version ends in one of:

- ``R`` answered with the right entry, ``C`` resolved after one choice (the right entry was offered),
- ``W`` answered with a wrong entry, ``M`` a covered question that ended with a person,
- ``E`` an uncovered question that ended with a person, ``A`` an uncovered question that was answered.

Wrong answers are ``W`` and ``A``; resolved questions are ``R`` and ``C`` (EVAL.md's total resolution).
Only the questions on which the two versions differ say anything about which is better: with ``b`` questions
where only the candidate answers wrongly and ``c`` where only the live version does, the candidate is
significantly worse at GATE_CONFIDENCE if an exact one-sided McNemar test (``b`` out of ``b + c`` under a fair
coin) gives p < 1 - GATE_CONFIDENCE. One wrong answer more on 18 held-out questions is p = 0.5: not evidence.

The rule, on each set and on all sets pooled (the benchmark files weigh in with their questions):
1. refused if the candidate gives significantly more wrong answers, and more than
   LEARNING_MAX_WRONG_ANSWER_INCREASE of the questions more;
2. refused if it resolves significantly fewer questions;
3. (each set) refused if its out-of-scope recall is significantly under the floor (LEARNING_MIN_OOS_RECALL,
   or the live version's recall if that was already lower): its one-sided exact upper bound is under it. A floor rather
   than "no drop": the live version of a new knowledge base escalates nearly everything, so any candidate that
   answers more catches fewer uncovered questions (clinc150: 100 % -> 90 %, auto-resolution 40 % -> 92 %);
4. pooled, it must resolve more questions than the live version or give fewer wrong answers ("no gain"
   otherwise: a candidate that changes nothing measurable stays out);
5. a candidate with a new encoder (``require_evidence``) must be *shown* better: pooled, it resolves significantly
   more or gives significantly fewer wrong answers. A new encoder moves every vector, which a small hold-out samples
   poorly: replaying half of soportemax dev, 2 of 5 fine-tuned candidates gained one to three questions on a
   hold-out of 14-20 and were promoted, yet gave 2-4 more wrong answers on the other half.
6. a candidate with a new encoder also runs the risk-and-intent stage in that encoder's space (one embedding per
   message), so it must keep that stage (``risk_stage``), on the intent phrase bank's held-out split:
   - it hands over no fewer phrases of any class with their reason than the live encoder. No significance here: who
     must reach a person must not get fewer by chance either;
   - it does not hand over significantly more of the near-miss (ordinary) questions: at GATE_CONFIDENCE, counting
     every extra one as flagged by the candidate alone (4 more is p=0.06). An ordinary question handed to a person
     costs an agent's time, not the customer's safety, and the hold-out's figures count it as unresolved too.
     Ten encoders fine-tuned in the replay benchmarks each flagged 1 of 135 near misses where the bundled one flagged
     none, while catching 111-115 of 124 risk phrases against its 103.
7. a candidate with a new encoder is also put against the same learning on the live encoder (head-only), rules 1-5
   with the head-only candidate in the live version's place (``learning.retraining.Runner._fine_tuned_or_not``):
   beating the live version is not enough when the learning alone beats it by more (clinc150, 10,000 turns: 1,857
   of 2,048 held-out questions resolved fine-tuned, 2,001 head-only, 1,612 by the live version).
Figures without per-question verdicts (older jobs) fall back to the point comparison of the rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from knowledge.evaluation import Outcome

GATE_CONFIDENCE = 0.90
"""How sure the gate must be that the candidate is worse before it refuses it (one-sided)."""

WRONG = frozenset("WA")
RESOLVED = frozenset("RC")
OUT_OF_SCOPE = frozenset("EA")


def verdict(outcome: Outcome) -> str:
    """One letter for what happened to this question (see the module's docstring)."""
    right = outcome.query.faq_id
    if right is None:
        return "A" if outcome.answered_id is not None else "E"
    if outcome.answered_id is not None:
        return "R" if outcome.answered_id == right else "W"
    return "C" if outcome.picked is not None else "M"


def verdicts(outcomes: Sequence[Outcome]) -> str:
    return "".join(verdict(o) for o in outcomes)


def worse_p(only_candidate: int, only_live: int) -> float:
    """One-sided exact McNemar p-value that the candidate has the event more often than the live version."""
    return _tail(only_candidate, only_candidate + only_live)


def _tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def upper_bound(successes: int, n: int, confidence: float = GATE_CONFIDENCE) -> float:
    """One-sided exact (Clopper-Pearson) upper bound of a proportion: the p at which seeing at most
    ``successes`` of ``n`` has probability 1 - ``confidence``."""
    if successes >= n:
        return 1.0
    low, high = successes / n, 1.0
    for _ in range(50):  # bisection: the binomial cdf falls as p grows
        mid = (low + high) / 2
        cdf = sum(math.comb(n, i) * mid**i * (1 - mid) ** (n - i) for i in range(successes + 1))
        low, high = (mid, high) if cdf > 1 - confidence else (low, mid)
    return high


@dataclass
class Comparison:
    """The paired counts of one evaluation set (or of all of them pooled)."""

    name: str
    live: str
    candidate: str

    def count(self, letters: frozenset[str], version: str) -> int:
        return sum(1 for v in getattr(self, version) if v in letters)

    def only(self, letters: frozenset[str], version: str) -> int:
        other = "live" if version == "candidate" else "candidate"
        return sum(
            1
            for mine, theirs in zip(getattr(self, version), getattr(self, other), strict=True)
            if mine in letters and theirs not in letters
        )

    @property
    def n(self) -> int:
        return len(self.live)


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    """How sure: one line per set, e.g. "holdout: resolves 6 more of 18 questions (12 vs 6, p=0.02); ..."."""


def _p(value: float) -> str:
    return f"p={value:.2g}" if value >= 0.001 else "p<0.001"


def _judge(comparison: Comparison, floor: float | None, reasons: list[str]) -> str:
    """Append the refusals this set gives; return its evidence line."""
    alpha = 1 - GATE_CONFIDENCE
    name, n = comparison.name, comparison.n
    wrong_l, wrong_c = comparison.count(WRONG, "live"), comparison.count(WRONG, "candidate")
    res_l, res_c = comparison.count(RESOLVED, "live"), comparison.count(RESOLVED, "candidate")
    p_wrong = worse_p(comparison.only(WRONG, "candidate"), comparison.only(WRONG, "live"))
    p_fewer = worse_p(comparison.only(RESOLVED, "live"), comparison.only(RESOLVED, "candidate"))
    p_more = worse_p(comparison.only(RESOLVED, "candidate"), comparison.only(RESOLVED, "live"))
    wrong_significant = p_wrong < alpha and (wrong_c - wrong_l) / n > settings.LEARNING_MAX_WRONG_ANSWER_INCREASE
    if wrong_significant:
        reasons.append(f"{name}: wrong answers rise from {wrong_l} to {wrong_c} of {n} questions ({_p(p_wrong)})")
    if p_fewer < alpha:
        reasons.append(f"{name}: resolves fewer questions, {res_c} against {res_l} of {n} ({_p(p_fewer)})")
    if res_c >= res_l:
        resolution = f"resolves {res_c - res_l} more of {n} questions ({res_c} vs {res_l}, {_p(p_more)})"
    else:
        resolution = f"resolves {res_l - res_c} fewer of {n} questions ({res_c} vs {res_l}, {_p(p_fewer)})"
    if wrong_c > wrong_l:
        sure = "significant" if wrong_significant else "not significant"
        wrong = f"wrong answers {wrong_c} vs {wrong_l}, {sure} ({_p(p_wrong)})"
    else:
        wrong = f"wrong answers {wrong_c} vs {wrong_l}"
    line = f"{name}: candidate {resolution}; {wrong}"
    oos = comparison.count(OUT_OF_SCOPE, "candidate")
    if floor is not None and oos:
        kept = comparison.count(frozenset("E"), "candidate")
        upper = upper_bound(kept, oos)
        if upper < floor - 1e-9:
            reasons.append(
                f"{name}: out-of-scope recall {kept}/{oos} is under {floor:.3f} "
                f"(upper {GATE_CONFIDENCE:.0%} bound {upper:.3f})"
            )
        line += f"; out-of-scope questions kept from an answer {kept}/{oos}"
    return line


def _floor(before: dict[str, Any]) -> float | None:
    recall = before.get("oos_recall")
    return min(recall, settings.LEARNING_MIN_OOS_RECALL) if recall is not None else None


def decide(
    live: dict[str, dict[str, Any]],
    candidate: dict[str, dict[str, Any]],
    require_evidence: bool = False,
    risk_stage: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> Decision:
    """The gate's decision on the figures of both versions per evaluation set (``evaluate``'s, with verdicts);
    ``require_evidence``: the candidate has a new encoder (rule 5); ``risk_stage``: the live and the candidate
    encoder's ``knowledge.intents.held_out_figures`` (rule 6)."""
    decision = Decision(promote=False)
    if risk_stage is not None:
        decision.evidence.append(_judge_risk_stage(*risk_stage, decision.reasons))
    comparisons = []
    for name, before in live.items():
        after = candidate[name]
        if not before.get("n"):
            continue
        paired = before.get("verdicts"), after.get("verdicts")
        if not (paired[0] and paired[1] and len(paired[0]) == len(paired[1])):
            _judge_rates(name, before, after, decision.reasons)
            continue
        comparison = Comparison(name, str(paired[0]), str(paired[1]))
        comparisons.append(comparison)
        decision.evidence.append(_judge(comparison, _floor(before), decision.reasons))
    if not any(before.get("n") for before in live.values()):
        decision.reasons.append("nothing to evaluate on: no held-out labelled conversations and no benchmark")
    if comparisons:
        pooled = Comparison(
            "all sets" if len(comparisons) > 1 else comparisons[0].name,
            "".join(c.live for c in comparisons),
            "".join(c.candidate for c in comparisons),
        )
        if len(comparisons) > 1:
            decision.evidence.append(_judge(pooled, None, decision.reasons))
        res_l, res_c = pooled.count(RESOLVED, "live"), pooled.count(RESOLVED, "candidate")
        wrong_l, wrong_c = pooled.count(WRONG, "live"), pooled.count(WRONG, "candidate")
        if res_c <= res_l and wrong_c >= wrong_l:
            decision.reasons.append(
                f"{pooled.name}: no gain: resolves {res_c} of {pooled.n} questions (live {res_l}), "
                f"wrong answers {wrong_c} (live {wrong_l})"
            )
        elif require_evidence:
            p_more = worse_p(pooled.only(RESOLVED, "candidate"), pooled.only(RESOLVED, "live"))
            p_fewer_wrong = worse_p(pooled.only(WRONG, "live"), pooled.only(WRONG, "candidate"))
            if min(p_more, p_fewer_wrong) >= 1 - GATE_CONFIDENCE:
                decision.reasons.append(
                    f"{pooled.name}: a new encoder must be shown better, and is not: resolves {res_c} vs {res_l} of "
                    f"{pooled.n} questions ({_p(p_more)}), wrong answers {wrong_c} vs {wrong_l} ({_p(p_fewer_wrong)})"
                )
    decision.promote = not decision.reasons
    return decision


def _judge_risk_stage(live: Mapping[str, Any], candidate: Mapping[str, Any], reasons: list[str]) -> str:
    """Rule 6: append a refusal if the candidate's encoder hands fewer risk phrases, or significantly more near misses,
    to a person."""
    for reason, caught in candidate["caught"].items():
        if caught < live["caught"][reason]:
            reasons.append(
                f"risk stage: the new encoder hands over {caught} of {candidate['positives'][reason]} held-out "
                f"'{reason}' phrases, the live one {live['caught'][reason]}"
            )
    extra = candidate["near_misses_flagged"] - live["near_misses_flagged"]
    if extra > 0 and worse_p(extra, 0) < 1 - GATE_CONFIDENCE:
        reasons.append(
            f"risk stage: the new encoder hands over {candidate['near_misses_flagged']} of {candidate['near_misses']} "
            f"held-out ordinary questions, the live one {live['near_misses_flagged']}"
        )
    caught_c, caught_l = sum(candidate["caught"].values()), sum(live["caught"].values())
    return (
        f"risk stage (intent bank, held out): candidate hands over {caught_c} of "
        f"{sum(candidate['positives'].values())} risk and person-request phrases (live {caught_l}), "
        f"{candidate['near_misses_flagged']} of {candidate['near_misses']} ordinary questions "
        f"(live {live['near_misses_flagged']})"
    )


def _judge_rates(name: str, before: dict[str, Any], after: dict[str, Any], reasons: list[str]) -> None:
    """Without per-question verdicts: the point comparison of the rates."""
    ar_before, ar_after = before["auto_resolution"], after["auto_resolution"]
    if ar_before is not None and (ar_after or 0.0) < ar_before - 1e-9:
        reasons.append(f"{name}: auto-resolution falls from {ar_before:.3f} to {ar_after or 0:.3f}")
    wrong_before, wrong_after = before["wrong_answer_rate"] or 0.0, after["wrong_answer_rate"] or 0.0
    if wrong_after > wrong_before + settings.LEARNING_MAX_WRONG_ANSWER_INCREASE + 1e-9:
        reasons.append(f"{name}: wrong-answer rate rises from {wrong_before:.3f} to {wrong_after:.3f}")
    oos_before, oos_after = before.get("oos_recall"), after.get("oos_recall")
    floor = _floor(before)
    if floor is not None and (oos_after or 0.0) < floor - 1e-9:
        reasons.append(
            f"{name}: out-of-scope recall {oos_after or 0:.3f} is under {floor:.3f} (live: {oos_before:.3f})"
        )


def unmeasured(live: dict[str, dict[str, Any]]) -> list[str]:
    """What the gate could not see: shown with its decision, so ops know what a promotion rests on."""
    if any(figures.get("oos_recall") is not None for figures in live.values()):
        return []
    return ["no evaluation set has out-of-scope questions: answers to uncovered questions were not measured"]
