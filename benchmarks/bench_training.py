"""Training quality, speed and memory on the full simulated province.

1. Simulates 180,000 staff x (14 + 1) days (epsilon-greedy popularity logging, eps 0.2).
2. Quality: for 3, 7 and 14 days of history before the last day, trains a model on those
   days only and reports, on requests of the last day, the TRUE expected clicks@3 (from the
   simulator's ground truth) of random, popularity, the attribute oracle, the model and the
   full oracle, and the share of the oracle's gain over popularity the model captures.
3. Speed/memory: `recommender train` on the 14 days (~9 M impressions) in a child process
   (wall time and peak RSS), feature building on 1 M vs 10 M rows, and batch ranking of
   100,000 requests.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from features.definition import FeatureEncoder
from recommender.batch import rank_requests
from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.domain import Request
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.quality import HeldOutRequests
from training.dataset import log_context
from training.fitting import attribute_values
from training.train import TrainConfig, train

DAY = 86400.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--staff", type=int, default=180_000)
    ap.add_argument("--days", default="3,7,14")
    ap.add_argument("--data", help="reuse a simulated folder (15 days) instead of simulating")
    ap.add_argument("--eval-requests", type=int, default=30_000)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    day_list = [int(d) for d in args.days.split(",")]
    total_days = max(day_list) + 1
    tmp = tempfile.TemporaryDirectory()
    data = Path(args.data) if args.data else Path(tmp.name) / "province"
    if not args.data:
        t = time.perf_counter()
        simulate(data, SimulationConfig(staff=args.staff, days=total_days, seed=args.seed))
        print(f"simulated {args.staff:,} staff x {total_days} days in {time.perf_counter() - t:.0f} s")
    staff = load_staff(data / "staff.csv")
    catalog = load_banners(data / "banners.json")
    t = time.perf_counter()
    log = load_impressions(data / "impressions.jsonl", catalog=catalog)
    print(f"loaded {len(log):,} impressions in {time.perf_counter() - t:.0f} s")
    truth = GroundTruth.load(data)
    print(f"hidden per-person share of the attractiveness logit variance (per banner, across staff): "
          f"{truth.hidden_variance_share():.0%}")
    t0 = float(log.ts.min())
    start0 = t0 - (t0 + 9 * 3600) % DAY  # midnight KST of the first day
    eval_start = start0 + (total_days - 1) * DAY

    if args.skip_quality:
        day_list = []
    else:
        print("\nquality on the last day (true expected clicks@3 per request, from the ground truth):")
    header = f"{'days':>5} {'random':>8} {'popular':>8} {'attr-orc':>8} {'model':>8} {'oracle':>8} {'captured':>9} {'beats attr-oracle':>18}"
    lines = []
    for d in day_list:
        train_log = log.subset((log.ts >= eval_start - d * DAY) & (log.ts < eval_start))
        t = time.perf_counter()
        res = train(staff, catalog, train_log, None, TrainConfig(seed=args.seed))
        took = time.perf_counter() - t
        held = HeldOutRequests(truth, staff, catalog, log, since=eval_start, max_requests=args.eval_requests,
                               seed=args.seed, features_since=eval_start - d * DAY)
        rep = held.report({"model": res.artifact})
        v = rep.values
        lines.append(f"{d:>5} {v['random']:8.4f} {v['popularity']:8.4f} {v['attribute_oracle']:8.4f} {v['model']:8.4f} "
                     f"{v['oracle']:8.4f} {rep.captured_share('model'):9.1%} {str(v['model'] > v['attribute_oracle']):>18}")
        print(f"  {d} days: {len(train_log):,} rows, trained {res.chosen} in {took:.0f} s; "
              f"validation {res.metrics[res.chosen]}; timings {res.timings}")
    if lines:
        print(header)
        print("\n".join(lines))

    if args.skip_speed:
        return
    print("\nspeed and memory:")
    first14 = log.subset(log.ts < eval_start)
    path14 = Path(tmp.name) / "train14.jsonl"
    with open(data / "impressions.jsonl", "rb") as f, open(path14, "wb") as g:
        last_prefix = f'"request_id": "r{total_days - 1:03d}-'.encode()
        for line in f:
            if last_prefix not in line:
                g.write(line)
    env = dict(os.environ, RECOMMENDER_PROGRESS="0")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cli.main", "train", "--staff", str(data / "staff.csv"),
                        "--banners", str(data / "banners.json"), "--impressions", str(path14),
                        "--out", str(Path(tmp.name) / "models")], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
    print(r.stdout)
    if r.returncode != 0:
        print(r.stderr)
    print(f"recommender train on {len(first14):,} impressions (14 days): {wall:.0f} s wall (loading included), "
          f"peak RSS {peak:.2f} GiB; goals <= 300 s and <= 8 GiB")

    # feature building: 1 M vs 10 M rows (the same rows repeated to reach 10 M)
    cfg = TrainConfig()
    enc = FeatureEncoder(cfg.features).fit(attribute_values(staff, cfg.features), catalog.banners, log.click_rate())
    ctx = log_context(enc, staff, catalog, log)
    for n in (1_000_000, 10_000_000):
        rows = np.arange(n) % len(log)
        times = []
        for _ in range(3 if n < 5_000_000 else 1):
            t = time.perf_counter()
            ctx.features(enc, rows, position=log.position[rows])
            times.append(time.perf_counter() - t)
        print(f"features for {n:>10,} rows: {np.median(times):6.1f} s ({n / np.median(times) / 1e6:.2f} M rows/s)")

    # batch ranking of 100,000 requests of the last day, history = the 14 days before
    from features.pipeline import history_from_logs
    from training.artifact import load_model

    model_dir = sorted((Path(tmp.name) / "models").iterdir())[-1]
    model = load_model(model_dir)
    req_idx = np.unique(log.request[log.ts >= eval_start])[:100_000]
    rts, rst = log.request_ts(), log.request_staff()
    requests = [Request(log.request_ids[i], float(rts[i]), log.staff_ids[rst[i]]) for i in req_idx]
    t = time.perf_counter()
    history = history_from_logs([first14], catalog, model.encoder.config.half_life_days)
    th = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        rank_requests(model, staff, catalog, history, requests)
        times.append(time.perf_counter() - t)
    print(f"batch ranking of {len(requests):,} requests: median {np.median(times):.1f} s of 3 "
          f"(plus {th:.0f} s to index the 14-day history once); goal <= 30 s")


if __name__ == "__main__":
    main()
