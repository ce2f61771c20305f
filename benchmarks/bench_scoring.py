"""Scoring one request in process: a trained model's ``score()`` for a person's candidates.

Builds the service's click history (features.history.RunningHistory, as a worker holds it)
from a simulated province's impressions, loads a model folder, and times, for requests of
people with a history, in alternating rounds:

- ``score``: ModelArtifact.score as the service calls it: a linear model's static part
  from its cache, then one compiled call (features.kernel.score_person) that gathers the
  counters, computes the numeric features and takes the dot product;
- ``lookup+numpy``: the same scores from the counters read into a dict and the numeric
  features computed on whole columns, then the dot product (the path without the fused
  kernel), to show what the fusion buys.

    recommender simulate --out DIR --staff 30000 --days 14
    recommender train --staff DIR/staff.csv --banners DIR/banners.json --impressions DIR/impressions.jsonl --out M
    .venv/bin/python benchmarks/bench_scoring.py --province DIR --model M/<version>

Goal: score p50 <= 25 microseconds for 30 candidates.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from features.history import RunningHistory  # noqa: E402
from features.pipeline import events_from_log  # noqa: E402
from recommender.contracts import load_banners, load_impressions, load_staff  # noqa: E402
from recommender.ranker import CandidateRows  # noqa: E402
from training.artifact import load_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--province", type=Path, required=True, help="simulated folder: staff.csv, banners.json, impressions.jsonl")
    p.add_argument("--model", type=Path, required=True, help="a trained model folder (logistic)")
    p.add_argument("--requests", type=int, default=5000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--candidates", type=int, default=30)
    args = p.parse_args()

    catalog = load_banners(args.province / "banners.json")
    staff = load_staff(args.province / "staff.csv")
    log = load_impressions(args.province / "impressions.jsonl")
    model = load_model(args.model)
    history = RunningHistory(model.encoder.config.half_life_days)
    t = time.perf_counter()
    history.add_events(events_from_log(log, catalog))
    print(f"click history: {len(history):,} impressions of {history.n_people:,} people, "
          f"built in {time.perf_counter() - t:.1f} s, {history.base.nbytes / 2**20:.0f} MiB of arrays")
    banners = list(catalog)[:args.candidates]
    people = [s for s in log.staff_ids[:2000]]
    now = float(log.ts.max()) + 3600.0
    requests = [CandidateRows.for_request(s, staff.get(s).attributes, now, banners) for s in people]

    def fused(rows):
        return model.score(rows, history)

    class Unfused:
        """The same history without its fused scoring: the model reads a dict of counters."""

        def __init__(self, running):
            self.query_person, self.query = running.query_person, running.query

    plain = Unfused(history)

    def unfused(rows):
        return model.score(rows, plain)

    worst = max(float(np.max(np.abs(fused(r) - unfused(r)))) for r in requests[:500])
    print(f"largest difference between the two paths over 500 requests: {worst:.2e}")
    timings: dict[str, list[float]] = {"score": [], "lookup+numpy": []}
    for _ in range(2):  # warm caches and the compiled code
        for r in requests:
            fused(r)
            unfused(r)
    for rnd in range(args.rounds):
        for name, fn in (("score", fused), ("lookup+numpy", unfused))[::1 if rnd % 2 == 0 else -1]:
            ts = []
            for i in range(args.requests):
                r = requests[i % len(requests)]
                t0 = time.perf_counter()
                fn(r)
                ts.append(time.perf_counter() - t0)
            timings[name].append(ts)
    print(f"{len(banners)} candidates, {args.rounds} rounds of {args.requests:,} requests, alternating:")
    for name, rounds in timings.items():
        p50 = [statistics.median(ts) * 1e6 for ts in rounds]
        p99 = [float(np.percentile(ts, 99)) * 1e6 for ts in rounds]
        print(f"  {name:13s} p50 {statistics.median(p50):6.1f} us (rounds {min(p50):.1f}-{max(p50):.1f}), "
              f"p99 {statistics.median(p99):6.1f} us")


if __name__ == "__main__":
    main()
