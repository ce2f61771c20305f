"""Before an arm serves a model, the model must rank a few real requests: a model that
loads but cannot score (NaN weights, a feature definition that reads a staff attribute
the directory does not hold, a bug) would otherwise pass the reload and then answer every
request with the operators' order. A model whose click-history features decay with
a half-life the service keeps no counters for is refused too: the service builds its
counters at start for the half-lives of the models its arms serve then."""
from __future__ import annotations

import numpy as np

from recommender.domain import UNKNOWN, Banner
from recommender.ranker import CandidateRows

from .directory import Directory

PROBE_PEOPLE = 3
PROBE_BANNERS = 50
PROBE_UNKNOWN_BANNER = "probe-banner-not-in-the-catalog"


def probe_model(scorer, directory: Directory, history, now: float) -> str | None:
    """Why ``scorer`` cannot serve, or None. It must read only staff attributes the staff
    directory holds, and score requests of a few staff members (and of an unknown one)
    over the catalog's banners (and a banner the catalog does not know) with one finite
    number per candidate."""
    config = getattr(getattr(scorer, "encoder", None), "config", None)
    model_half_life = getattr(config, "half_life_days", None)
    held = getattr(history, "half_lives", None)
    if model_half_life is not None and held is not None and float(model_half_life) not in held:
        return (f"refused: its click-history features decay with a half-life of {float(model_half_life):g} days, "
                f"and the service keeps its click history at {', '.join(f'{h:g}' for h in held)} days (the "
                "half-lives of the models it served at start); restart the service to serve it")
    needed = tuple(getattr(scorer, "staff_attributes", ()) or ())
    staff = directory.staff
    if needed and len(staff):
        missing = [a for a in needed if a not in staff.attributes_held()]
        if missing:
            return (f"refused: it reads the staff attribute(s) {', '.join(missing)}, which the staff directory "
                    f"does not hold (it holds {', '.join(sorted(staff.attributes_held()))})")
    banners = list(directory.catalog)[:PROBE_BANNERS] + [Banner(PROBE_UNKNOWN_BANNER, UNKNOWN)]
    people = [(s.staff_id, s.attributes) for s in list(staff.by_id.values())[:PROBE_PEOPLE]] + [("probe-unknown", {})]
    for staff_id, profile in people:
        rows = CandidateRows.for_request(staff_id, profile, now, banners)
        try:
            scores = np.asarray(scorer.score(rows, history), dtype=np.float64)
        except Exception as e:
            return f"refused: scoring a probe request failed ({type(e).__name__}: {e})"
        if scores.shape != (len(banners),):
            return f"refused: it gave {scores.shape} scores for {len(banners)} candidates of a probe request"
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        if bad:
            return f"refused: {bad} of {len(banners)} scores of a probe request are not finite (NaN or infinite)"
    return None
