"""banners.json: a JSON array or JSON Lines of banner objects (docs/data-contracts.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..domain import (AFTER_COMPLETION, OUTCOME_TYPES, Banner, Catalog, DeliveryGoal, FrequencyCap, OutcomeRule,
                      control_characters_in)
from ..errors import ErrorCollector, FieldError
from ..timeutil import format_ts, parse_ts
from ._json import iter_json_objects, parse_unique




def banner_from_dict(obj: object) -> Banner:
    """Validate one banner object; raises FieldError(field, message)."""
    if not isinstance(obj, dict):
        raise FieldError("<row>", f"expected a JSON object, got {type(obj).__name__}")
    bid = obj.get("banner_id")
    if "banner_id" not in obj:
        raise FieldError("banner_id", "missing field")
    if not isinstance(bid, str) or not bid.strip():
        raise FieldError("banner_id", "must be a non-empty string")
    if control_characters_in(bid):
        raise FieldError("banner_id", "must not contain control characters (NUL, tab, newline, ...)")
    if "category" not in obj:
        raise FieldError("category", "missing field")
    cat = obj["category"]
    if not isinstance(cat, str) or not cat.strip():
        raise FieldError("category", "must be a non-empty string")
    title = obj.get("title", "")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise FieldError("title", "must be a string")
    bounds = {}
    for name in ("start", "end"):
        v = obj.get(name)
        if v is None:
            bounds[name] = None
        else:
            try:
                bounds[name] = parse_ts(v)
            except ValueError as e:
                raise FieldError(name, str(e)) from None
    if bounds["start"] is not None and bounds["end"] is not None and bounds["end"] <= bounds["start"]:
        raise FieldError("end", "end must be after start")
    target_raw = obj.get("target") or {}
    if not isinstance(target_raw, dict):
        raise FieldError("target", "must be an object of attribute -> list of values")
    target: dict[str, tuple[str, ...]] = {}
    for k, v in target_raw.items():
        if v is None:
            v = []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise FieldError(f"target.{k}", "must be a list of strings")
        target[k] = tuple(v)
    pinned = obj.get("pinned", False)
    if pinned is None:
        pinned = False
    if not isinstance(pinned, bool):
        raise FieldError("pinned", "must be true or false")
    priority = obj.get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise FieldError("priority", "must be an integer")
    tags = obj.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        raise FieldError("tags", "must be a list of strings")
    cap = cap_from_dict(obj.get("cap"), "cap")
    goal = goal_from_dict(obj.get("goal"), "goal")
    if goal is not None and bounds["start"] is None:
        raise FieldError("goal", "a banner with a delivery goal needs a start: delivery counts from it")
    if goal is not None and goal.by <= bounds["start"]:
        raise FieldError("goal.by", "must be after the banner's start")
    outcome = outcome_from_dict(obj.get("outcome"), "outcome")
    return Banner(bid.strip(), cat.strip(), title, bounds["start"], bounds["end"], target, pinned, priority, tuple(tags),
                  cap, goal, outcome)


def _check_object(obj: object, field: str, names: tuple[str, ...], what: str) -> None:
    """A banner's rule object (goal, outcome, cap) must be an object of only these fields."""
    if not isinstance(obj, dict):
        raise FieldError(field, what)
    unknown = set(obj) - set(names)
    if unknown:
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        raise FieldError(f"{field}.{sorted(unknown)[0]}", f"unknown field ({listed})")


def goal_from_dict(obj: object, field: str = "goal") -> DeliveryGoal | None:
    """A delivery goal object (``{"metric": "reach", "target": 3000, "by": "2026-03-06T18:00:00+09:00"}``),
    or None for null; raises FieldError naming ``field``'s part."""
    if obj is None:
        return None
    _check_object(obj, field, ("metric", "target", "by"),
                  'must be an object {"metric": "reach", "clicks" or "outcomes", "target": N, "by": time}')
    for name in ("metric", "target", "by"):
        if name not in obj:
            raise FieldError(f"{field}.{name}", "missing field")
    if obj["metric"] not in GOAL_METRICS:
        raise FieldError(f"{field}.metric", 'must be "reach", "clicks" or "outcomes"')
    target = obj["target"]
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise FieldError(f"{field}.target", "must be a positive integer")
    try:
        by = parse_ts(obj["by"])
    except ValueError as e:
        raise FieldError(f"{field}.by", str(e)) from None
    return DeliveryGoal(obj["metric"], target, by)


GOAL_METRICS = ("reach", "clicks", "outcomes")
MAX_OUTCOME_VALUE = 100.0


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == value


def outcome_from_dict(obj: object, field: str = "outcome") -> OutcomeRule | None:
    """A banner's outcome rule (``{"type": "complete", "value": 1.0, "after_completion": "hide"}``,
    every part optional), or None for null; raises FieldError naming ``field``'s part."""
    if obj is None:
        return None
    _check_object(obj, field, ("type", "value", "after_completion", "downweight"),
                  'must be an object such as {"type": "complete", "after_completion": "hide"}')
    kind = obj.get("type", "complete")
    if kind not in OUTCOME_TYPES:
        raise FieldError(f"{field}.type", f"must be one of {', '.join(repr(t) for t in OUTCOME_TYPES)}")
    value = obj.get("value", 1.0)
    if not _number(value) or not 0 < value <= MAX_OUTCOME_VALUE:
        raise FieldError(f"{field}.value", f"must be a number above 0 and at most {MAX_OUTCOME_VALUE:g}")
    after = obj.get("after_completion", "keep")
    if after not in AFTER_COMPLETION:
        raise FieldError(f"{field}.after_completion", f"must be one of {', '.join(repr(a) for a in AFTER_COMPLETION)}")
    weight = obj.get("downweight", 0.5)
    if not _number(weight) or not 0 < weight < 1:
        raise FieldError(f"{field}.downweight", "must be a number between 0 and 1 (the odds are multiplied by it)")
    if "downweight" in obj and after != "downweight":
        raise FieldError(f"{field}.downweight", 'applies only with "after_completion": "downweight"')
    return OutcomeRule(kind, float(value), after, float(weight))


def outcome_to_dict(rule: OutcomeRule | None) -> dict | None:
    if rule is None:
        return None
    out: dict = {"type": rule.type, "value": rule.value, "after_completion": rule.after_completion}
    if rule.after_completion == "downweight":
        out["downweight"] = rule.downweight
    return out


def goal_to_dict(goal: DeliveryGoal | None) -> dict | None:
    return None if goal is None else {"metric": goal.metric, "target": goal.target, "by": format_ts(goal.by)}


MAX_CAP_COUNT = 100
MAX_CAP_DAYS = 30


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAP_COUNT:
        raise FieldError(field, f"must be an integer from 1 to {MAX_CAP_COUNT}")
    return value


def cap_from_dict(obj: object, field: str = "cap") -> FrequencyCap | None:
    """A frequency cap object (``{"per_day": 3, "unclicked": {"impressions": 10, "days": 14}}``,
    either rule optional), or None for null; raises FieldError naming ``field``'s part."""
    if obj is None:
        return None
    _check_object(obj, field, ("per_day", "unclicked"), 'must be an object such as {"per_day": 3}')
    per_day = obj.get("per_day")
    per_day = None if per_day is None else _count(per_day, f"{field}.per_day")
    unclicked = obj.get("unclicked")
    n = days = None
    if unclicked is not None:
        if not isinstance(unclicked, dict) or set(unclicked) != {"impressions", "days"}:
            raise FieldError(f"{field}.unclicked", 'must be an object {"impressions": N, "days": D}')
        n = _count(unclicked["impressions"], f"{field}.unclicked.impressions")
        days = unclicked["days"]
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= MAX_CAP_DAYS:
            raise FieldError(f"{field}.unclicked.days", f"must be a number of days above 0 and at most {MAX_CAP_DAYS}")
        days = float(days)
    if per_day is None and n is None:
        raise FieldError(field, "must set per_day, unclicked or both (null means no cap)")
    return FrequencyCap(per_day, n, days)


def cap_to_dict(cap: FrequencyCap | None) -> dict | None:
    if cap is None:
        return None
    out: dict = {}
    if cap.per_day is not None:
        out["per_day"] = cap.per_day
    if cap.unclicked_impressions is not None:
        out["unclicked"] = {"impressions": cap.unclicked_impressions, "days": cap.unclicked_days}
    return out


def banner_to_dict(b: Banner) -> dict:
    return {
        "banner_id": b.banner_id,
        "category": b.category,
        "title": b.title,
        "start": None if b.start is None else format_ts(b.start),
        "end": None if b.end is None else format_ts(b.end),
        "target": {k: list(v) for k, v in b.target.items()},
        "pinned": b.pinned,
        "priority": b.priority,
        "tags": list(b.tags),
        "cap": cap_to_dict(b.cap),
        "goal": goal_to_dict(b.goal),
        **({"outcome": outcome_to_dict(b.outcome)} if b.outcome is not None else {}),
    }


def parse_banner_objects(objects: Iterable[tuple[int, object]], file: str, max_errors: int = 1) -> Catalog:
    errors = ErrorCollector(file, max_errors)
    banners = parse_unique(objects, banner_from_dict, "banner_id", errors)
    errors.raise_if_any()
    return Catalog(banners)


def load_banners(path: str | Path, max_errors: int = 1) -> Catalog:
    """Load and validate a banner catalog (JSON array or JSON Lines)."""
    return parse_banner_objects(iter_json_objects(path), str(path), max_errors)


def write_banners(path: str | Path, banners: Iterable[Banner]) -> None:
    """Write the catalog as a JSON array, UTF-8, Korean text kept as is."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump([banner_to_dict(b) for b in banners], f, ensure_ascii=False, indent=1)
        f.write("\n")
