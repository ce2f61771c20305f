"""A stand-in model for bench_service.py when no trained model is given: a linear click
model over staff x banner one-hots plus the click-history counters from features/
(the same History queries a trained model makes), all in numpy."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

HISTORY_KEYS = ("views_banner", "clicks_banner", "ever_clicked_banner", "views_category", "clicks_category",
                "views_person", "clicks_person", "global_views", "global_clicks")


class LinearFakeModel:
    def __init__(self, version: str, dim: int = 4096, seed: int = 0):
        self.version = version
        self.dim = dim
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0, 0.5, dim)
        self.wh = rng.normal(0, 0.1, len(HISTORY_KEYS))
        self._hash: dict[str, int] = {}
        self._rows: dict[tuple, np.ndarray] = {}

    def _h(self, s: str) -> int:
        v = self._hash.get(s)
        if v is None:
            v = self._hash[s] = zlib.crc32(s.encode()) % self.dim
        return v

    def score(self, rows, history) -> np.ndarray:
        n = len(rows)
        ids = [b.banner_id for b in rows.banner]
        cats = [b.category for b in rows.banner]
        attrs = rows.attributes[0] if n else {}
        key = (attrs.get("role", ""), attrs.get("school_level", ""), attrs.get("region", ""), tuple(ids))
        idx = self._rows.get(key)
        if idx is None:  # one-hot positions per (profile, candidate list), computed once
            idx = np.empty((n, 4), dtype=np.int64)
            for i, (b, c) in enumerate(zip(ids, cats)):
                idx[i, 0] = self._h(b)
                idx[i, 1] = self._h(f"role={key[0]}|{c}")
                idx[i, 2] = self._h(f"level={key[1]}|{b}")
                idx[i, 3] = self._h(f"region={key[2]}|{c}")
            if len(self._rows) < 100_000:
                self._rows[key] = idx
        h = history.query(list(rows.staff_id), ids, cats, rows.ts)
        H = np.column_stack([np.log1p(h[k]) for k in HISTORY_KEYS])
        return self.w[idx].sum(axis=1) + H @ self.wh


def load_model(folder):
    meta = json.loads((Path(folder) / "metadata.json").read_text())
    return LinearFakeModel(meta["version"])
