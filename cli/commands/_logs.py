"""What the commands that read impression logs tell about them."""
from __future__ import annotations

from typing import Iterable

from recommender.candidates import COLD_START
from recommender.contracts import ImpressionLog
from recommender.domain import Catalog


def outside_catalog_note(logs: Iterable[ImpressionLog], catalog: Catalog, banners_file: str) -> str | None:
    """How many impressions name banners that ``banners_file`` does not hold (None if none):
    they are accepted and ranked as the service ranks them, and users should know."""
    ids: dict[str, None] = {}
    rows = 0
    for log in logs:
        named, n = log.outside_catalog(catalog)
        ids.update(dict.fromkeys(named))
        rows += n
    if not rows:
        return None
    listed = ", ".join(list(ids)[:5]) + (", ..." if len(ids) > 5 else "")
    return f"{rows:,} impressions name {len(ids):,} banner(s) outside {banners_file} ({listed}): {COLD_START}"
