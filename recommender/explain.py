"""Explanations of a ranking: why each banner got its place.

A banner's explanation has two halves. Its **score parts**: the model's score (a logit)
split into named parts that add up to it exactly; the model computes them
(``training.explain``), from the same feature rows it scores. And its **place reasons**:
the rules that put it where it is whatever its score (pinning, exploration, the
operators' order when no model answered) and the targeting that made it a candidate.
A sentence per banner, built from both, is what an operator reads out.

Each place reason is one small rule in ``PLACE_RULES``: a function of the banner's
``Placement`` that returns a ``PlaceReason`` or None. A new rule (a goal, a cap) is one
more function in that tuple, and one more field of ``Placement`` if it needs data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from features.history import History

from .domain import Banner
from .exploration import BOLTZMANN, EPSILON_GREEDY
from .ranker import FALLBACK_VERSION, CandidateRows, CandidateSet, Ranker, RankResult

# parts smaller than this (in logit units) are not worth a word in the sentence
NEGLIGIBLE = 0.05


class ExplainError(RuntimeError):
    """A ranking that cannot be explained (a model kind that cannot split its score)."""


@dataclass(frozen=True)
class ScorePart:
    """One named share of a banner's score, in the score's units (logit). ``name`` is the
    group (e.g. "role x category"), ``text`` says in plain words what it stands for."""

    name: str
    text: str
    value: float


class PartsScorer(Protocol):
    """A scorer that can split its scores: ``score_parts(rows, history)[i]`` adds up to
    ``score(rows, history)[i]``."""

    version: str

    def score_parts(self, rows: CandidateRows, history: History) -> list[list[ScorePart]]: ...


@dataclass(frozen=True)
class Placement:
    """What the place rules see of one ranked banner."""

    banner: Banner
    position: int
    score: float
    propensity: float
    explored: bool  # the request was explored (epsilon-greedy: its unpinned banners are in a random order)
    epsilon: float  # the share of requests the ranker explores
    model_answered: bool  # False: no model, or it failed (the operators' order)
    attributes: Mapping[str, str]
    boost: float = 0.0  # the pacing boost of a banner behind its delivery goal (recommender.goals)
    policy: str = EPSILON_GREEDY  # the ranker's exploration policy
    # Boltzmann's explored request: "moved" (the banner drawn and tried here), "down"/"up"
    # (shifted one place by that move), "" (at the place its score gives)
    moved: str = ""
    greedy_position: int = 0  # 1-based: where its score put it

    @property
    def by_exploration(self) -> bool:
        """Exploration, not the score, decided this place."""
        return self.explored and (self.policy != BOLTZMANN or self.moved != "")


@dataclass(frozen=True)
class PlaceReason:
    """A rule that decided a banner's place (``decisive``), or that made it a candidate."""

    kind: str
    text: str
    decisive: bool = True


def _operators_order(p: Placement) -> PlaceReason | None:
    if p.model_answered or p.banner.pinned:
        return None
    if p.by_exploration:  # exploration placed it (a model that fails on a request never explores it)
        return PlaceReason("operators_order", "no model is loaded, so its score has no parts", decisive=False)
    return PlaceReason("operators_order", "no model answered (none is loaded, or it failed on this request), so the "
                                          f"operators' order placed it (priority {p.banner.priority})")


def _pinned(p: Placement) -> PlaceReason | None:
    if not p.banner.pinned:
        return None
    return PlaceReason("pinned", f"pinned by the operators (priority {p.banner.priority}): pinned banners come first "
                                 "whatever their scores")


def _explored(p: Placement) -> PlaceReason | None:
    if not p.by_exploration or p.banner.pinned:
        return None
    chance = f"chance of this place {p.propensity:.3g}"
    if p.policy == BOLTZMANN:
        if p.moved == "moved":
            return PlaceReason("exploration", f"this request was explored (the arm explores {p.epsilon:.0%} of "
                                              "requests): this banner was drawn to be tried higher up, the more likely "
                                              f"the higher its score, and placed here instead of place "
                                              f"{p.greedy_position} ({chance})")
        side = "lower" if p.moved == "down" else "higher"
        return PlaceReason("exploration", f"one place {side} than its score gives: this request was explored and "
                                          f"another banner was tried {'above' if p.moved == 'down' else 'below'} "
                                          f"it ({chance})")
    return PlaceReason("exploration", f"this request was explored (the arm explores {p.epsilon:.0%} of requests): the "
                                      "unpinned banners are in a random order whatever their scores (chance of this "
                                      f"place {p.propensity:.3g})")


def _goal(p: Placement) -> PlaceReason | None:
    if p.boost <= 0 or p.banner.pinned or p.by_exploration or p.banner.goal is None:
        return None
    g = p.banner.goal
    what = "people reached" if g.metric == "reach" else "clicks"
    return PlaceReason("goal", f"behind its delivery goal ({g.target:,} {what} by its deadline): pacing raised its "
                               f"score by {p.boost:+.2f} for the order")


def _targeted(p: Placement) -> PlaceReason | None:
    target = {k: v for k, v in p.banner.target.items() if v}
    if not target:
        return None
    groups = "; ".join(f"{k} {p.attributes.get(k) or 'unknown'}" for k in target)
    return PlaceReason("targeting", f"a candidate because it targets your group ({groups})", decisive=False)


# in order of precedence: the first decisive reason is what decided the place (without a
# model the service still explores, around the operators' order)
PLACE_RULES: tuple[Callable[[Placement], PlaceReason | None], ...] = (_pinned, _explored, _goal, _operators_order,
                                                                       _targeted)


@dataclass
class BannerExplanation:
    """Why one banner holds its place: the parts of its score (they add up to ``score``),
    the rules that placed it, what decided the place, and a sentence."""

    banner_id: str
    title: str
    position: int
    score: float
    parts: list[ScorePart]
    reasons: list[PlaceReason]
    decided_by: str  # the first decisive reason's kind, else "score"
    sentence: str = field(default="")

    def to_dict(self) -> dict:
        """The explanation as the HTTP API and ``recommender explain --json`` give it."""
        return {"sentence": self.sentence, "decided_by": self.decided_by,
                "parts": [{"name": p.name, "text": p.text, "value": p.value} for p in self.parts],
                "reasons": [{"kind": r.kind, "text": r.text, "decisive": r.decisive} for r in self.reasons]}


def place_reasons(p: Placement) -> list[PlaceReason]:
    """Every rule's reason for this banner, in the rules' order of precedence."""
    return [r for r in (rule(p) for rule in PLACE_RULES) if r is not None]


def _signed(v: float) -> str:
    return f"{v:+.2f}"


def sentence(e: BannerExplanation, shared: frozenset[str] = frozenset()) -> str:
    """One sentence an operator can read out, from the parts and the reasons only: the
    two largest parts for the banner and the largest against it, and the reasons; a rule
    that decided the place comes first. Parts named in ``shared`` (the same for every
    candidate of the request: they move every score alike, so they do not change the
    order) and the baseline are left out."""
    named = [p for p in e.parts if p.name != "baseline" and p.name not in shared and abs(p.value) >= NEGLIGIBLE]
    up = sorted((p for p in named if p.value > 0), key=lambda p: -p.value)[:2]
    down = sorted((p for p in named if p.value < 0), key=lambda p: p.value)[:1]
    listed = lambda parts: " and ".join(f"{p.text} ({_signed(p.value)})" for p in parts)  # noqa: E731
    by_rule = e.decided_by != "score"
    clauses = []
    if up:
        clauses.append(("its score gains most from " if by_rule else "mostly because of ") + listed(up))
    if down:
        clauses.append(("and loses most from " if by_rule and up else "its score loses most from " if by_rule
                        else "held back by ") + listed(down))
    if e.parts and not clauses:
        clauses.append("nothing sets it apart from the other banners")
    score = [", ".join(clauses)] if clauses else []
    decisive = [r.text for r in e.reasons if r.decisive]
    notes = [r.text for r in e.reasons if not r.decisive]
    segments = decisive + score + notes if by_rule else score + decisive + notes
    head = f"Place {e.position}: '{e.title or e.banner_id}'"
    return (head + " — " + "; ".join(segments) if segments else head) + "."


def shared_parts(parts: Sequence[Sequence[ScorePart]]) -> frozenset[str]:
    """The parts with one value for every candidate (of two or more): the person's own
    attributes, say, which raise or lower every banner's score alike."""
    if len(parts) < 2:
        return frozenset()
    values: dict[str, set[float]] = {}
    for row in parts:
        for p in row:
            values.setdefault(p.name, set()).add(round(p.value, 12))
    return frozenset(name for name, v in values.items() if len(v) == 1)


def _moves(result: RankResult) -> list[tuple[str, int]]:
    """Per shown position: how Boltzmann's move placed it ("moved", "down", "up", "") and
    its 1-based place in the greedy order."""
    n = len(result.banner_ids)
    if result.moved is None:
        return [("", t + 1) for t in range(n)]
    g, p = result.moved
    out = []
    for t in range(n):
        if t == p and g != p:
            out.append(("moved", g + 1))
        elif p < t <= g:
            out.append(("down", t))
        elif g <= t < p:
            out.append(("up", t + 2))
        else:
            out.append(("", t + 1))
    return out


def explain_ranking(result: RankResult, candidates: Sequence[Banner], attributes: Mapping[str, str],
                    parts: Sequence[Sequence[ScorePart]] | None, epsilon: float = 0.0,
                    boost: Sequence[float] | None = None, policy: str = EPSILON_GREEDY) -> list[BannerExplanation]:
    """Explanations of ``result`` in shown order. ``parts`` are the score parts of each
    candidate (in ``candidates``' order), or None when no model answered; ``epsilon``
    is the share of requests the ranker explores, ``policy`` how it explores."""
    index = {b.banner_id: i for i, b in enumerate(candidates)}
    answered = result.model_version != FALLBACK_VERSION and parts is not None
    shared = shared_parts(parts) if answered else frozenset()
    moves = _moves(result)
    out = []
    for position, (bid, score, prop) in enumerate(zip(result.banner_ids, result.scores, result.propensities), 1):
        i = index[bid]
        banner = candidates[i]
        moved, greedy_position = moves[position - 1]
        reasons = place_reasons(Placement(banner, position, score, prop, result.explored, epsilon, answered, attributes,
                                          0.0 if boost is None else float(boost[i]), policy, moved, greedy_position))
        decided = next((r.kind for r in reasons if r.decisive), "score")
        e = BannerExplanation(bid, banner.title, position, score, list(parts[i]) if answered else [], reasons, decided)
        e.sentence = sentence(e, shared)
        out.append(e)
    return out


def explain_request(ranker: Ranker, staff_id: str, attributes: Mapping[str, str], ts: float,
                    candidates: "Sequence[Banner] | CandidateSet", history: History, boost=None
                    ) -> tuple[RankResult, list[BannerExplanation]]:
    """Rank one request as ``ranker`` does (exploration included) and explain it. The
    score parts come from the ranker's scorer on the same rows and history; a scorer
    that cannot split its scores raises ExplainError."""
    cands = candidates if isinstance(candidates, CandidateSet) else CandidateSet(candidates)
    check_explainable(ranker)
    result = ranker.rank(staff_id, attributes, ts, cands, history, boost)
    return result, explain_ranked(ranker, result, staff_id, attributes, ts, cands, history, boost)


def check_explainable(ranker: Ranker) -> None:
    """Raises ExplainError when the ranker's scorer cannot split its scores."""
    scorer = ranker.scorer
    if scorer is not None and not hasattr(scorer, "score_parts"):
        kind = getattr(scorer, "kind", type(scorer).__name__)
        raise ExplainError(f"model {scorer.version} (kind {kind}) cannot split its scores into parts")


def explain_ranked(ranker: Ranker, result: RankResult, staff_id: str, attributes: Mapping[str, str], ts: float,
                   cands: CandidateSet, history: History, boost=None) -> list[BannerExplanation]:
    """The explanations of a ranking ``ranker`` made (``result``) of these candidates: the
    score parts from its scorer on the same rows and history, and the place reasons. It
    does not touch the ranker's random state, so it can run outside the ranker's lock."""
    scorer = ranker.scorer
    parts = None
    if scorer is not None and result.model_version != FALLBACK_VERSION and len(cands):
        rows = CandidateRows.for_request(staff_id, attributes, ts, cands.banners)
        parts = scorer.score_parts(rows, history)
    return explain_ranking(result, cands.banners, attributes, parts, ranker.epsilon, boost, ranker.exploration.policy)
