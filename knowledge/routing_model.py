"""Routing decision: turn a query embedding plus vector-store hits into "answer with entry X" or "escalate".

Why this shape
--------------
The embedding model (multilingual-e5-small) compresses cosine similarities into a narrow band (roughly 0.75-0.95),
so a raw similarity is neither a good ranker on its own nor a probability. The decision therefore has three
small, separately testable stages:

1. **Entry scores from hits** (``_entry_similarities``). Hits are grouped by entry and by *kind* of indexed text.
   "Asking" texts (the FAQ question and extra phrasings = examples, embedded with the e5 ``query:`` prefix) are
   scored by the mean of the entry's best few hits (one lucky neighbour counts less than three good ones);
   "document" texts (answer, answer chunks, question+answer, embedded with ``passage:``) by the best hit. The entry
   similarity is the weighted mean over the kinds that this knowledge base indexes. An entry missing from the hits
   of a kind gets that kind's floor (the lowest similarity returned), which is an upper bound on its true score.
   Without a head, entries are *ranked* by the same mean over centred cosines (the knowledge base's mean vector
   removed, see ``knowledge.index._centre``), while the calibrator's features keep the plain cosine.
2. **A light head** (optional; trained only from ``HEAD_MIN_EXAMPLES_PER_ENTRY`` examples per entry): multinomial
   logistic regression over the frozen, centred embedding, one class per entry plus an out-of-scope class when
   out-of-scope examples exist. Examples feed exactly one mechanism: they are indexed as phrasings of their entry
   (kNN evidence) *and* train this head. The entry ranking is ``log p_head(entry) + knn_weight * similarity``: the
   head is the better classifier, the kNN similarity the better out-of-scope signal, their sum beats both.
3. **A calibrator**: logistic regression over a handful of features of the winning entry (similarity, margins, head
   log-probability, head out-of-scope logit, whether the message crosses languages; see FEATURES) giving
   ``confidence = P(answer is correct)``; fitted on a labelled calibration file. The threshold is then the lowest
   confidence at which the calibration set's wrong-answer rate (measured on out-of-fold confidences) stays within
   target and the out-of-scope recall stays above its floor. Without a calibration file, default calibrator weights
   (fitted once on public intent sets, see ``DEFAULT_CALIBRATORS``) and default thresholds are used.

Without a head, an entry no closer to the message than unrelated text gets to the encoder (``min_similarity``, from
``TextEncoder.unrelated_similarity``) is neither answered nor offered (``covers``): the softmax is relative, and on a
small FAQ the nearest entry stands out even for "what are black holes". The thresholds are calibrated without it.

Only numpy is needed at query time. Training the head uses torch (imported lazily) with full-batch L-BFGS: about
2-3 s for 15k examples on two CPU cores.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from knowledge.language import detect_language

FloatArray = npt.NDArray[np.float32]

ASK_KINDS = frozenset({"question", "phrasing"})
"""Kinds embedded on the query side (``query:`` prefix) and compared like with like."""
DOC_KINDS = frozenset({"answer", "chunk", "qa"})
"""Kinds embedded on the passage side (``passage:`` prefix)."""

MODEL_VERSION = 3
"""3: as 2, with a sharper softmax for cross-lingual messages (CROSS_LINGUAL_SHARPENING); 2: without a head,
confidence is ``top_mass`` (see SOFTMAX_TEMPERATURE); 1: the logistic calibrator's."""

OOS_CLASS = "__oos__"
"""Head class for out-of-scope examples (examples whose label is None). Such examples are never indexed."""

FEATURES = (
    "sim",
    "sim_margin",
    "sim_gap",
    "sim_rel",
    "head_logp",
    "head_oos_logit",
    "spread",
    "query_words",
    "entry_wrong",
    "cross_lingual",
    "cross_lingual_sim",
)
"""Calibrator inputs, in order. Absent signals are 0 (no head -> head_logp = head_oos_logit = 0).

``spread``: how many distinct entries the best ``SPREAD_HITS`` hits name (a query close to one entry names few);
``query_words``: log of the query's word count (very short and very long messages are answered wrongly more often).
Measured on soportemax dev by 5-fold cross-validation of the whole calibration: +6 points of auto-resolution at the
same wrong-answer rate.

``entry_wrong``: how often answers naming the winning entry were wrong on the calibration set (smoothed log-odds, see
``ENTRY_PRIOR_WEIGHT``). Some entries attract uncovered questions (banking77_oos: in-domain out-of-scope questions
land on a few neighbouring entries), and no per-query signal tells them apart. Only learned when the calibration set
has at least ``ENTRY_STATS_MIN_PER_ENTRY`` queries per entry, else 0 (unused). Measured by calibrating on one half of
banking77_oos valid and measuring on the other (10 reshuffles): auto-resolution 0.774 -> 0.820 at 5 % wrong answers.
With few queries per entry (soportemax dev: 2.5; clinc150 val halves: 10) the statistics are noise and it cost
0.3-5 points, hence the floor.

``cross_lingual``: 1 when the message's detected language is none of the winning entry's languages (an English
question answered from a Spanish entry), else 0; ``cross_lingual_sim``: the same times ``sim``. Cross-lingual
similarities run lower for the same match quality, so one similarity scale underrated English questions on the
Spanish FAQ. Measured on soportemax dev by 5-fold cross-validation (20 reshuffles): auto-resolution 0.625 -> 0.681 at
5 % wrong answers, English 0.47 -> 0.71, Spanish 0.66 -> 0.68. Constant (so unused) where all messages and entries
share one language.
"""

COMPACT_FEATURES = ("sim", "sim_margin", "head_logp", "head_oos_logit", "cross_lingual", "cross_lingual_sim")
COMPACT_BELOW = 100
"""Calibration sets smaller than this fit only COMPACT_FEATURES. Measured on soportemax dev (30 random splits:
calibrate on 40 % of it, about 58 questions, measure on the rest): auto-resolution 0.52 with every feature (one split
in ten under 0.22) and 0.60 with these (one in ten under 0.39), at 3.9 % and 3.4 % wrong answers. With 80 % of it
(115 questions) both gave 0.68."""

ENTRY_PRIOR_WEIGHT = 5.0
"""Pseudo-count of the overall wrong rate mixed into each entry's wrong rate (``entry_wrong``)."""
ENTRY_STATS_MIN_PER_ENTRY = 25.0
"""Calibration queries per entry needed before ``entry_wrong`` is learned (banking77_oos valid: 45; clinc150 val: 21;
soportemax dev: 2.5)."""

SPREAD_HITS = 10

HEAD_MIN_EXAMPLES_PER_ENTRY = 2.0
"""The head is trained only from this many labelled examples per entry (on average) up; below it, examples are only
indexed as phrasings. A softmax over 60 entries from 45 examples (half of soportemax dev learned from conversations)
has nothing to learn from most classes; without a head, retraining may also calibrate on its training examples
(leave-one-out, see ``knowledge.routing.score_texts``)."""

SOFTMAX_TEMPERATURE = 0.05
"""Without a head, confidence is the softmax over the entries' centred similarities at this temperature: the share of
the evidence the best entry holds (``top_mass``); the best three's share is ``choice_mass``. No labels are involved, so
it means the same on a knowledge base nobody calibrated. Chosen on soportemax dev and confirmed on vuelalto dev, by the
area under the ROC curve of "the best entry is right" against in-scope and out-of-scope questions: 0.915 / 0.842 at
0.05 (0.911 / 0.840 at 0.03; 0.910 / 0.832 at 0.07), where the logistic calibrator's best single input, the centred
similarity, gave 0.891 / 0.782 and the margin 0.869 / 0.810."""

CROSS_LINGUAL_SHARPENING = 0.8
"""A message in none of the best entry's languages is scored at this times SOFTMAX_TEMPERATURE. Its centred
similarities run flatter for an equally good match even after ``knowledge.routing.aligned`` moves it into the
knowledge base's language: the best entry's lead over the next nine is 0.162 for Spanish questions on vuelalto's
English FAQ against 0.214 for English ones (0.184 / 0.208 for English questions on soportemax's Spanish FAQ), so the
same lead earns less confidence. Chosen on vuelalto dev, confirmed unchanged on soportemax dev (see the README)."""

DEFAULT_ANSWER_THRESHOLD = 0.79
DEFAULT_CHOICE_THRESHOLD = 0.66
"""Thresholds on ``top_mass`` (answer) and ``choice_mass`` (offer the best three) until a knowledge base is calibrated.
Fitted across soportemax dev and vuelalto dev together (``benchmarks/generalisation.py --fit-defaults``): the pair with
the best worst-set total resolution whose direct answers stay within the 5 % target and whose choices stay within 30 %
of messages on both sets (89.2 / 83.0 % total, 3.0 / 4.1 % wrong, choices on 30.0 / 28.0 % of messages)."""

MAX_CHOICE_RATE = 0.30
"""Calibration keeps choices to at most this share of the calibration messages (each one costs the customer a click).
At 0.25 instead, thresholds calibrated on one set and applied to the other resolved 79.0 / 87.5 % (vuelalto /
soportemax) rather than 81.0 / 88.3 %, with choices on 22.7 / 27.2 % rather than 24.7 / 29.4 % of its messages."""

SHRINK_QUERIES = 150.0
"""A calibrated threshold is pulled towards the default as if the default had been measured on this many messages:
``t = (n * t_calibrated + SHRINK_QUERIES * t_default) / (n + SHRINK_QUERIES)``. A dev file of 150-180 questions moves
the threshold about halfway, so one small file cannot produce an extreme threshold (vuelalto's own dev file alone chose
0.93 for answering, which answered 29 % of its questions)."""


# Default calibrators (weights in FEATURES order, bias, threshold), used until calibrate() is run. Fitted once
# (scratch script fit_defaults.py) on clinc150 val + banking77_oos valid pooled (English, public sets, no test data):
# "head" = examples indexed + head trained on train.jsonl (threshold: wrong <= 5 % and OOS recall >= 90 % there;
# pooled auto-resolution 0.87); "no_head" = only FAQ questions indexed (threshold: wrong <= 5 %; conservative, pooled
# auto-resolution only 0.21 because intent titles alone are weak evidence). Run calibrate() whenever labelled
# queries exist.
DEFAULT_CALIBRATORS: dict[str, tuple[tuple[float, ...], float, float]] = {
    # name: (weights, bias, threshold)
    "head": ((25.25, 19.08, -50.52, 60.87, 2.11, -0.6, 0.0, 0.0, 0.0, 0.0, 0.0), -22.8, 0.757),
    "no_head": ((5.87, 23.94, 45.8, 3.37, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), -6.98, 0.929),
}


@dataclass(frozen=True)
class Hit:
    """One vector-store hit."""

    entry_id: str
    similarity: float  # cosine similarity, 1 - cosine distance
    kind: str  # "question" | "phrasing" | "answer" | "chunk" | "qa"
    centred: float | None = None  # cosine after removing the knowledge base's mean (ranks better); None = unknown


@dataclass(frozen=True)
class Scored:
    """The model's view of one query: best entry, calibrated confidence, and the features behind it."""

    entry_id: str | None  # best entry; None when the head's out-of-scope class wins or there is nothing to rank
    confidence: float  # calibrated P(answering entry_id is correct)
    candidates: list[tuple[str, float]]  # (entry_id, similarity), best ranked first (at most 5)
    features: dict[str, float]


def _b64(a: npt.NDArray[Any]) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype=np.float32)
    return {"shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def _unb64(d: Mapping[str, Any]) -> FloatArray:
    raw = base64.b64decode(d["b64"])
    return np.frombuffer(raw, dtype=np.float32).reshape(d["shape"]).copy()


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softmax(scores: Mapping[str, float], temperature: float) -> dict[str, float]:
    if not scores:
        return {}
    top = max(scores.values())
    weights = {key: math.exp((value - top) / temperature) for key, value in scores.items()}
    total = sum(weights.values())
    return {key: weight / total for key, weight in weights.items()}


@dataclass
class Head:
    """Softmax regression over centred embeddings: p(class | q) = softmax(((q - mean) / scale) @ weights + bias)."""

    classes: list[str]
    mean: FloatArray
    scale: float
    weights: FloatArray  # (dim, n_classes)
    bias: FloatArray  # (n_classes,)

    def log_proba(self, q: FloatArray) -> FloatArray:
        z = ((q - self.mean) / self.scale) @ self.weights + self.bias
        z = z - z.max()
        out: FloatArray = (z - np.log(np.exp(z).sum())).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "mean": _b64(self.mean),
            "scale": self.scale,
            "weights": _b64(self.weights),
            "bias": _b64(self.bias),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Head:
        return cls(
            classes=list(d["classes"]),
            mean=_unb64(d["mean"]),
            scale=float(d["scale"]),
            weights=_unb64(d["weights"]),
            bias=_unb64(d["bias"]),
        )

    @classmethod
    def fit(cls, vectors: FloatArray, labels: Sequence[str], l2: float = 1e-3, max_iter: int = 200) -> Head:
        """Full-batch L-BFGS on cross-entropy + l2 * ||W||^2. Seconds for 15k x 384 on CPU."""
        import torch  # lazy: only training needs torch

        classes = sorted(set(labels), key=lambda c: (c == OOS_CLASS, c))
        index = {c: i for i, c in enumerate(classes)}
        x = np.asarray(vectors, dtype=np.float32)
        mean = x.mean(axis=0)
        scale = float(x.std()) or 1.0
        xt = torch.tensor((x - mean) / scale)
        yt = torch.tensor([index[c] for c in labels])
        w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(classes, mean, scale, w.detach().numpy().astype(np.float32), b.detach().numpy().astype(np.float32))


def fit_logistic(x: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Binary logistic regression by Newton's method (few features -> a few milliseconds). Returns (w, b).

    Features are standardised internally so that the ridge penalty treats them alike; the returned weights apply to
    the raw features.
    """
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd < 1e-9] = 1.0
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    t = y.astype(np.float64)
    beta = np.zeros(z.shape[1])
    pen = np.full(z.shape[1], l2)
    pen[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (p - t) + pen * beta
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    w = beta[:-1] / sd
    b = float(beta[-1] - (beta[:-1] * mu / sd).sum())
    return w, b


def choose_threshold(
    confidence: npt.ArrayLike,
    correct: npt.ArrayLike,
    out_of_scope: npt.ArrayLike,
    target_wrong_rate: float = 0.05,
    min_oos_recall: float = 0.0,
    z: float = 1.0,
) -> float:
    """Lowest threshold whose answered set keeps the wrong-answer rate within target and OOS recall above a floor.

    Answering = confidence >= threshold. The wrong-answer rate is judged by its Wilson upper bound with ``z``
    standard deviations (z=0: point estimate) so that a threshold chosen on a small calibration set still holds on
    unseen queries. Returns a value just above every confidence (answer nothing) when no threshold qualifies.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    oos = np.asarray(out_of_scope, dtype=bool)
    if not len(conf):
        return 1.0
    n_oos = int(oos.sum())
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    n = np.arange(1, len(order) + 1, dtype=np.float64)
    p = np.cumsum(~ok[order]) / n
    upper = (p + z * z / (2 * n) + z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    recall = 1.0 - np.cumsum(oos[order]) / n_oos if n_oos else np.ones(len(order))
    cut = np.ones(len(order), dtype=bool)  # a threshold cannot split ties: only the last of equal confidences
    cut[:-1] = sorted_conf[1:] != sorted_conf[:-1]
    good = np.flatnonzero(cut & (upper <= target_wrong_rate) & (recall >= min_oos_recall))
    return float(sorted_conf[good[-1]]) if len(good) else float(conf.max()) + 1e-6


def choice_threshold_for(
    choice_mass: npt.NDArray[np.float64],
    right_in_three: npt.NDArray[np.bool_],
    answered: npt.NDArray[np.bool_],
    max_choice_rate: float = MAX_CHOICE_RATE,
) -> float:
    """The lowest ``choice_mass`` threshold that offers choices to at most ``max_choice_rate`` of all messages.

    Lower thresholds offer more choices and so resolve more (a customer who is offered the right entry picks it): the
    budget of clicks, not accuracy, is the binding limit. Returns 1.0 (never offer) when nothing unanswered qualifies.
    """
    rest = np.sort(choice_mass[~answered])[::-1]
    budget = int(max_choice_rate * len(choice_mass))
    if budget <= 0 or not len(rest) or not right_in_three[~answered].any():
        return 1.0
    if budget >= len(rest):
        return float(rest[-1])
    # a threshold cannot split ties: stop above the first value that would overshoot the budget
    cut = float(rest[budget])
    return float(np.nextafter(cut, np.inf)) if (rest >= cut).sum() > budget else cut


def choose_thresholds(
    top_mass: npt.NDArray[np.float64],
    choice_mass: npt.NDArray[np.float64],
    right_first: npt.NDArray[np.bool_],
    right_in_three: npt.NDArray[np.bool_],
    out_of_scope: npt.NDArray[np.bool_],
    target_wrong_rate: float = 0.05,
    min_oos_recall: float = 0.0,
    max_choice_rate: float = MAX_CHOICE_RATE,
    steps: int = 200,
) -> tuple[float, float]:
    """(answer, choices) thresholds with the most messages resolved, directly or by one click.

    Direct answers keep the wrong-answer rate within target and out-of-scope recall above its floor; choices stay
    within ``max_choice_rate`` of all messages. At most ``steps`` answer thresholds (quantiles) are tried.
    """
    if not len(top_mass):
        return DEFAULT_ANSWER_THRESHOLD, DEFAULT_CHOICE_THRESHOLD
    n_oos = int(out_of_scope.sum())
    in_scope = max(int((~out_of_scope).sum()), 1)
    candidates = np.unique(np.quantile(top_mass, np.linspace(0, 1, steps), method="lower"))  # observed values
    best: tuple[float, float, float] | None = None
    for answer_at in np.append(candidates, float(top_mass.max()) + 1e-6):
        answered = top_mass >= answer_at
        wrong = int((answered & ~right_first).sum())
        if answered.any() and wrong / answered.sum() > target_wrong_rate:
            continue
        if n_oos and 1.0 - (answered & out_of_scope).sum() / n_oos < min_oos_recall:
            continue
        choices_at = choice_threshold_for(choice_mass, right_in_three, answered, max_choice_rate)
        offered = ~answered & (choice_mass >= choices_at)
        resolved = ((answered & right_first) | (offered & right_in_three)).sum() / in_scope
        if best is None or resolved > best[0]:
            best = (float(resolved), float(answer_at), choices_at)
    if best is None:
        return float(top_mass.max()) + 1e-6, DEFAULT_CHOICE_THRESHOLD
    return best[1], best[2]


def out_of_fold_confidence(
    x: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_], folds: int = 5, repeats: int = 3, seed: int = 0
) -> npt.NDArray[np.float64]:
    """Each query's confidence from calibrators fitted without it (k-fold, averaged over shuffles).

    Choosing the threshold on these rather than on the fitted calibrator's own outputs keeps the threshold from
    trusting the calibrator's overfit: on soportemax dev (150 queries) the in-sample choice held out at 6-7 % wrong
    answers for a 5 % target, this one at 4.5-5 %.
    """
    n = len(x)
    logits = np.zeros(n)
    counts = np.zeros(n)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        for held in np.array_split(rng.permutation(n), folds):
            train = np.setdiff1d(np.arange(n), held)
            if ok[train].all() or not ok[train].any():
                continue
            w, b = fit_logistic(x[train], ok[train])
            logits[held] += x[held] @ w + b
            counts[held] += 1
    w, b = fit_logistic(x, ok)
    logits = np.where(counts > 0, logits / np.maximum(counts, 1), x @ w + b)
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
    return out


@dataclass
class RoutingModel:
    """All learned state of one knowledge base. ``to_dict()``/``from_dict()`` give a JSON-serialisable artefact."""

    entry_ids: list[str]
    kind_weights: dict[str, float]  # kinds indexed in the vector store -> weight in the entry similarity
    ask_counts: dict[str, int]  # entry -> number of indexed asking vectors (question + phrasings)
    head: Head | None = None
    knn_weight: float = 20.0  # ranking = log p_head + knn_weight * similarity
    ask_top: int = 3  # asking kinds: mean of an entry's best `ask_top` hits
    calibrator_weights: list[float] = field(default_factory=list)
    calibrator_bias: float = 0.0
    threshold: float = 0.8
    entry_wrong: dict[str, float] = field(default_factory=dict)  # entry -> log-odds of a wrong answer (calibration)
    entry_wrong_prior: float = 0.0  # the same for entries without calibration statistics
    entry_languages: dict[str, frozenset[str]] = field(default_factory=dict)  # entry -> languages it is written in
    choice_threshold: float = DEFAULT_CHOICE_THRESHOLD  # offer the best three from this choice_mass up
    min_similarity: float = 0.0  # without a head: below this plain similarity, no entry covers the message
    version: int = MODEL_VERSION

    # ---- training -------------------------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        entry_ids: Sequence[str],
        example_vectors: FloatArray | None = None,
        example_labels: Sequence[str | None] = (),
        question_vectors: Mapping[str, FloatArray] | None = None,
        kind_weights: Mapping[str, float] | None = None,
        l2: float = 1e-3,
    ) -> RoutingModel:
        """Build a model for one knowledge base.

        ``example_vectors``/``example_labels``: labelled queries (``query:`` prefix); label None = out of scope. The
        in-scope ones must also be indexed as ``phrasing`` hits of their entry; all of them train the head (None ->
        the out-of-scope class). ``question_vectors``: the FAQ questions (``query:`` prefix), added to the head's
        training data. ``kind_weights``: which kinds the vector store holds for this knowledge base and their weight
        in the entry similarity (default: question/phrasing only).
        """
        ids = list(entry_ids)
        known = set(ids)
        weights = dict(kind_weights) if kind_weights else {"question": 1.0, "phrasing": 1.0}
        ask_counts = dict.fromkeys(ids, 1 if "question" in weights else 0)
        vecs: list[FloatArray] = []
        labels: list[str] = []
        if example_vectors is not None and len(example_labels):
            for v, lab in zip(np.asarray(example_vectors, dtype=np.float32), example_labels, strict=True):
                if lab is not None and lab not in known:
                    raise ValueError(f"example label {lab!r} is not an entry")
                vecs.append(v)
                labels.append(OOS_CLASS if lab is None else lab)
                if lab is not None:
                    ask_counts[lab] += 1
        head = None
        if vecs and len(vecs) >= HEAD_MIN_EXAMPLES_PER_ENTRY * len(ids):
            if question_vectors:
                for eid, v in question_vectors.items():
                    vecs.append(np.asarray(v, dtype=np.float32))
                    labels.append(eid)
            head = Head.fit(np.vstack(vecs), labels, l2=l2)
        name = "head" if head is not None else "no_head"
        w, b, t = DEFAULT_CALIBRATORS[name]
        t = t if head is not None else DEFAULT_ANSWER_THRESHOLD
        return cls(ids, weights, ask_counts, head, calibrator_weights=list(w), calibrator_bias=b, threshold=t)

    # ---- scoring --------------------------------------------------------------------------------------------------
    def _entry_similarities(self, hits: Sequence[Hit], centred: bool = False) -> dict[str, float]:
        """Weighted mean over indexed kinds of per-kind entry scores; entries absent from a kind get its floor.

        ``centred``: from the hits' centred cosines (the ranking); else from the plain cosines (the calibrator's
        features, whose scale the default calibrators were fitted on).
        """
        known = self.ask_counts
        per_kind: dict[str, dict[str, list[float]]] = {}
        floor: dict[str, float] = {}
        for h in hits:
            if h.entry_id not in known:
                continue  # out-of-scope examples or stale entries are not answers
            group = "ask" if h.kind in ASK_KINDS else h.kind
            sim = h.centred if centred and h.centred is not None else h.similarity
            per_kind.setdefault(group, {}).setdefault(h.entry_id, []).append(sim)
            floor[group] = min(floor.get(group, sim), sim)
        groups: dict[str, float] = {}
        for kind, wt in self.kind_weights.items():
            group = "ask" if kind in ASK_KINDS else kind
            groups[group] = groups.get(group, 0.0) + wt if group != "ask" else max(groups.get("ask", 0.0), wt)
        entries = {e for g in per_kind.values() for e in g}
        total_w = sum(groups.values()) or 1.0
        out: dict[str, float] = {}
        for e in entries:
            s = 0.0
            for group, wt in groups.items():
                sims = per_kind.get(group, {}).get(e)
                fl = floor.get(group, 0.0)
                if group == "ask":
                    m = max(1, min(self.ask_top, known[e]))
                    top = sorted(sims or [], reverse=True)[:m]
                    top += [fl] * (m - len(top))
                    s += wt * sum(top) / m
                else:
                    s += wt * (max(sims) if sims else fl)
            out[e] = s / total_w
        return out

    def features(
        self, query_vector: FloatArray, hits: Sequence[Hit], query_text: str = ""
    ) -> tuple[str | None, list[tuple[str, float]], dict[str, float]]:
        """Best entry, ranked candidates and the calibrator features (see FEATURES)."""
        sims = self._entry_similarities(hits)
        floor = min(sims.values()) if sims else 0.0
        centred = self._entry_similarities(hits, centred=True) if any(h.centred is not None for h in hits) else sims
        logp: dict[str, float] = {}
        oos_logit = 0.0
        if self.head is not None:
            lp = self.head.log_proba(np.asarray(query_vector, dtype=np.float32))
            logp = {c: float(v) for c, v in zip(self.head.classes, lp, strict=True)}
            if OOS_CLASS in logp:
                p_oos = min(max(math.exp(logp[OOS_CLASS]), 1e-6), 1 - 1e-6)
                oos_logit = math.log(p_oos / (1 - p_oos))
            # Entries published after the head was trained have no class yet: they compete on similarity,
            # with the head's best in-scope log-probability, until the next retraining gives them one.
            unknown = max((v for c, v in logp.items() if c != OOS_CLASS), default=0.0)
            for e in sims:
                logp.setdefault(e, unknown)
            pool = set(sims) | {c for c, v in logp.items() if v > -5.0 and c != OOS_CLASS}
            # the head's kNN term stays on plain cosine: on centred cosine clinc150 lost 1.1 points of
            # auto-resolution (92.8 -> 91.7 %) and banking77_oos gained 0.3 (evaluate --examples, each set's dev split)
            rank = {e: logp.get(e, -20.0) + self.knn_weight * sims.get(e, floor) for e in pool}
        else:
            rank = centred
        if not rank:
            return None, [], dict.fromkeys(FEATURES, 0.0)
        ordered = sorted(rank, key=lambda e: rank[e], reverse=True)
        best = ordered[0]
        s_best = sims.get(best, floor)
        others = sorted((sims.get(e, floor) for e in sims if e != best), reverse=True) or [floor]
        feats = {
            "sim": s_best,
            "sim_margin": s_best - others[0],
            "sim_gap": s_best - float(np.mean(others[:5])),
            "sim_rel": s_best - float(np.mean(others)),
            "head_logp": logp.get(best, 0.0) if self.head is not None else 0.0,
            "head_oos_logit": oos_logit,
            "spread": float(len({h.entry_id for h in hits[:SPREAD_HITS] if h.entry_id in self.ask_counts})),
            "query_words": math.log(1 + len(query_text.split())),
            "entry_wrong": self.entry_wrong.get(best, self.entry_wrong_prior) if self.entry_wrong else 0.0,
        }
        language = detect_language(query_text) if query_text else None
        crossing = float(
            bool(language and self.entry_languages.get(best) and language not in self.entry_languages[best])
        )
        feats["cross_lingual"] = crossing
        feats["cross_lingual_sim"] = crossing * s_best
        sharpening = CROSS_LINGUAL_SHARPENING if crossing and self.version >= 3 else 1.0
        masses = _softmax(centred, SOFTMAX_TEMPERATURE * sharpening)
        feats["top_mass"] = masses.get(best, 0.0)
        feats["choice_mass"] = sum(masses.get(e, 0.0) for e in ordered[:3])
        candidates = [(e, sims.get(e, floor)) for e in ordered[:5]]
        entry: str | None = best
        if self.head is not None and OOS_CLASS in logp and logp[OOS_CLASS] > logp.get(best, -20.0):
            entry = None
        return entry, candidates, feats

    def without_vectors(self, hits: Sequence[Hit]) -> RoutingModel:
        """This model as if these asking vectors were not indexed (leave-one-out scoring of learned phrasings).

        Only the counts of asking vectors change: an entry is scored by the mean of its best ``min(ask_top, count)``
        asking hits, so a hidden vector must also leave the count, or the entry would be padded with the floor.
        """
        counts = dict(self.ask_counts)
        for hit in hits:
            if hit.kind in ASK_KINDS and counts.get(hit.entry_id, 0) > 1:
                counts[hit.entry_id] -= 1
        return replace(self, ask_counts=counts)

    def include_entries(self, entry_ids: Iterable[str]) -> None:
        """Make entries added since training answerable (one indexed question each until retraining)."""
        for entry_id in entry_ids:
            if entry_id not in self.ask_counts:
                self.ask_counts[entry_id] = 1
                self.entry_ids.append(entry_id)

    @property
    def uses_mass(self) -> bool:
        """Confidence is ``top_mass`` (no head, current artefact) rather than the logistic calibrator's output."""
        return self.head is None and self.version >= 2

    def _confidence(self, feats: Mapping[str, float]) -> float:
        if self.uses_mass:
            return float(feats.get("top_mass", 0.0))
        x = sum(w * feats[f] for w, f in zip(self.calibrator_weights, FEATURES, strict=True))
        return _sigmoid(x + self.calibrator_bias)

    def score(self, query_vector: FloatArray, hits: Sequence[Hit], query_text: str = "") -> Scored:
        """Score one query: ``hits`` are the vector store's nearest texts, best first."""
        entry, candidates, feats = self.features(query_vector, hits, query_text)
        conf = self._confidence(feats) if entry is not None else 0.0
        return Scored(entry, conf, candidates, feats)

    def rescore(self, scored: Scored) -> Scored:
        """The same query with this model's current calibrator (after ``calibrate``, earlier confidences are stale)."""
        conf = self._confidence(scored.features) if scored.entry_id is not None else 0.0
        return Scored(scored.entry_id, conf, scored.candidates, scored.features)

    def covers(self, scored: Scored) -> bool:
        """Some entry is closer to the message than unrelated text gets (``min_similarity``). With a head, its
        out-of-scope class says so instead."""
        return scored.entry_id is not None and (
            self.head is not None or scored.features.get("sim", 0.0) >= self.min_similarity
        )

    def decide(self, scored: Scored) -> bool:
        """True = answer with ``scored.entry_id``; False = offer choices or hand over (``offers_choices``)."""
        return self.covers(scored) and scored.confidence >= self.threshold

    def offers_choices(self, scored: Scored) -> bool:
        """Not confident enough to answer, but the right entry is likely among the best three: offer them."""
        return (
            self.covers(scored)
            and not self.decide(scored)
            and scored.features.get("choice_mass", 0.0) >= self.choice_threshold
        )

    # ---- calibration ----------------------------------------------------------------------------------------------
    def calibrate(
        self,
        scored: Sequence[Scored],
        labels: Sequence[str | None],
        target_wrong_rate: float = 0.05,
        min_oos_recall: float = 0.9,
        z: float = 0.0,
        use_features: Sequence[str] | None = None,
    ) -> None:
        """Fit the calibrator on labelled queries (label None = must escalate) and choose the threshold.

        ``scored`` must come from this model (features are model-specific). Correct = the model's best entry equals
        the label. Only ``len(FEATURES) + 1`` parameters are fitted, plus the threshold. ``use_features`` restricts the
        calibrator to a subset of FEATURES (the others get weight 0); by default, COMPACT_FEATURES below
        COMPACT_BELOW questions. The threshold is chosen on
        out-of-fold confidences (``out_of_fold_confidence``) with the point estimate of the wrong-answer rate
        (``z`` = 0) by default; ``z`` > 0 adds a Wilson margin (see ``choose_threshold``).
        """
        if len(scored) != len(labels):
            raise ValueError("scored and labels differ in length")
        x = np.array([[s.features[f] for f in FEATURES] for s in scored], dtype=np.float64)
        ok = np.array([s.entry_id is not None and s.entry_id == lab for s, lab in zip(scored, labels, strict=True)])
        if ok.all() or not ok.any():
            raise ValueError("calibration needs both correct and incorrect cases")
        oos = np.array([lab is None for lab in labels])
        in_three = np.array(
            [lab is not None and lab in {e for e, _ in s.candidates[:3]} for s, lab in zip(scored, labels, strict=True)]
        )
        choice_mass = np.array([s.features.get("choice_mass", 0.0) if s.entry_id else 0.0 for s in scored])
        shrink = len(scored) / (len(scored) + SHRINK_QUERIES)
        if self.uses_mass:
            # confidence is label-free: only the two thresholds are chosen, then pulled towards the defaults
            top_mass = np.array([s.features.get("top_mass", 0.0) if s.entry_id else 0.0 for s in scored])
            answer_at, choices_at = choose_thresholds(
                top_mass, choice_mass, ok, in_three, oos, target_wrong_rate, min_oos_recall
            )
            self.threshold = shrink * answer_at + (1 - shrink) * DEFAULT_ANSWER_THRESHOLD
            self.choice_threshold = shrink * choices_at + (1 - shrink) * DEFAULT_CHOICE_THRESHOLD
            return
        x[:, FEATURES.index("entry_wrong")] = self._fit_entry_wrong(scored, ok)
        used = x.std(axis=0) > 1e-9  # e.g. no head -> head features constant 0: leave them out
        if use_features is None and len(scored) < COMPACT_BELOW:
            use_features = COMPACT_FEATURES
        if use_features is not None:
            used &= np.array([f in use_features for f in FEATURES])
        w = np.zeros(len(FEATURES))
        w_used, b = fit_logistic(x[:, used], ok)
        w[used] = w_used
        self.calibrator_weights = [float(v) for v in w]
        self.calibrator_bias = b
        answerable = np.array([s.entry_id is not None for s in scored])
        conf = np.where(answerable, out_of_fold_confidence(x[:, used], ok), 0.0)
        self.threshold = choose_threshold(conf, ok, oos, target_wrong_rate, min_oos_recall, z)
        answered = conf >= self.threshold
        choices_at = choice_threshold_for(choice_mass, in_three, answered)
        self.choice_threshold = shrink * choices_at + (1 - shrink) * DEFAULT_CHOICE_THRESHOLD

    def _fit_entry_wrong(self, scored: Sequence[Scored], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """Learn ``entry_wrong`` from the calibration set; returns the feature column for fitting the calibrator.

        The column is leave-one-out (a query's own outcome does not describe it); the stored values use every query.
        All zero (feature unused) when the set has fewer than ``ENTRY_STATS_MIN_PER_ENTRY`` queries per entry.
        """
        column = np.zeros(len(scored))
        self.entry_wrong, self.entry_wrong_prior = {}, 0.0
        if len(scored) < ENTRY_STATS_MIN_PER_ENTRY * max(len(self.entry_ids), 1):
            return column
        counts: dict[str, int] = {}
        wrongs: dict[str, int] = {}
        for s, good in zip(scored, ok, strict=True):
            if s.entry_id is not None:
                counts[s.entry_id] = counts.get(s.entry_id, 0) + 1
                wrongs[s.entry_id] = wrongs.get(s.entry_id, 0) + int(not good)
        if not counts:
            return column
        prior = sum(wrongs.values()) / sum(counts.values())
        a = ENTRY_PRIOR_WEIGHT
        for i, (s, good) in enumerate(zip(scored, ok, strict=True)):
            if s.entry_id is not None:
                n, w = counts[s.entry_id] - 1, wrongs[s.entry_id] - int(not good)
                column[i] = _logit((w + a * prior) / (n + a))
        self.entry_wrong = {e: _logit((wrongs[e] + a * prior) / (n + a)) for e, n in counts.items()}
        self.entry_wrong_prior = _logit(prior)
        return column

    # ---- persistence ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "entry_ids": self.entry_ids,
            "kind_weights": self.kind_weights,
            "ask_counts": self.ask_counts,
            "head": self.head.to_dict() if self.head is not None else None,
            "knn_weight": self.knn_weight,
            "ask_top": self.ask_top,
            "calibrator_weights": self.calibrator_weights,
            "calibrator_bias": self.calibrator_bias,
            "threshold": self.threshold,
            "choice_threshold": self.choice_threshold,
            "entry_wrong": self.entry_wrong,
            "entry_wrong_prior": self.entry_wrong_prior,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoutingModel:
        return cls(
            entry_ids=list(d["entry_ids"]),
            kind_weights={str(k): float(v) for k, v in d["kind_weights"].items()},
            ask_counts={str(k): int(v) for k, v in d["ask_counts"].items()},
            head=Head.from_dict(d["head"]) if d.get("head") else None,
            knn_weight=float(d["knn_weight"]),
            ask_top=int(d["ask_top"]),
            # artefacts from before a feature was added carry fewer weights: the new features get 0
            calibrator_weights=[float(v) for v in d["calibrator_weights"]]
            + [0.0] * (len(FEATURES) - len(d["calibrator_weights"])),
            calibrator_bias=float(d["calibrator_bias"]),
            threshold=float(d["threshold"]),
            choice_threshold=float(d.get("choice_threshold", DEFAULT_CHOICE_THRESHOLD)),
            entry_wrong={str(k): float(v) for k, v in d.get("entry_wrong", {}).items()},
            entry_wrong_prior=float(d.get("entry_wrong_prior", 0.0)),
            version=int(d.get("version", 1)),
        )
