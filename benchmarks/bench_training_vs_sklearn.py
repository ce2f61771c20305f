"""`recommender train` against a plain scikit-learn pipeline on the same files, side by side.

    .venv/bin/python benchmarks/bench_training_vs_sklearn.py --data DIR [--runs 3] [--holdout-days 1]

DIR holds staff.csv, banners.json and impressions.jsonl (`recommender simulate --out DIR`).
Each run starts two child processes one after the other, alternating (ours, plain, ours,
plain, ...), so that the load of the shared machine falls on both alike:

- **ours**: `recommender train` on the files, the whole command (loading included). Its
  output line "trained on ... (loading X s, training Y s)" gives the training alone.
- **plain**: this script with ``--plain-child``: the same files through the project's
  loaders, then one-hot role / school level / region / banner plus each person's clicks
  before the row (point in time), a default LogisticRegression (lbfgs) fitted on the rows
  before the held-out days, and the ranking of every held-out request's catalog banners
  by it. It reports its loading, and its training and ranking together.

Wall time is measured around each child; its CPU time (user + system) and peak RSS come
from its own rusage (wait4).
Each run is printed, then the medians and the ratios ours / plain.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One child process: wall time of the whole command, its parts, and its peak RSS."""

    wall_s: float
    cpu_s: float  # user + system time of the child: less sensitive than wall time to the machine's load
    peak_gib: float
    load_s: float
    work_s: float  # ours: training alone; plain: training and ranking together
    quality: str


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str, int]:
    """(wall s, CPU s, peak RSS GiB, stdout, exit code) of one child, its CPU time and peak
    taken from wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if p.returncode != 0:
            text += err.read()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 / 1024, text, p.returncode


def run_ours(data: Path, holdout_days: float, env: dict[str, str]) -> Run:
    with tempfile.TemporaryDirectory() as models:
        cmd = [sys.executable, "-m", "cli.main", "train", "--staff", str(data / "staff.csv"),
               "--banners", str(data / "banners.json"), "--impressions", str(data / "impressions.jsonl"),
               "--out", models, "--holdout-days", str(holdout_days)]
        wall, cpu, peak, text, code = run_child(cmd, env)
    if code != 0:
        raise SystemExit(f"recommender train failed ({code}):\n{text}")
    m = re.search(r"loading ([\d.]+) s, training ([\d.]+) s", text)
    load_s, work_s = (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))
    chosen = next((" ".join(line.split()[:3]) for line in text.splitlines() if "<- chosen" in line), "")
    return Run(wall, cpu, peak, load_s, work_s, f"chosen {chosen} (log loss, AUC)")


def run_plain(data: Path, holdout_days: float, env: dict[str, str]) -> Run:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain-child", "--data", str(data),
           "--holdout-days", str(holdout_days)]
    wall, cpu, peak, text, code = run_child(cmd, env)
    if code != 0:
        raise SystemExit(f"plain pipeline failed ({code}):\n{text}")
    r = json.loads(text.strip().splitlines()[-1])
    return Run(wall, cpu, peak, r["load_s"], r["fit_s"] + r["rank_s"], f"log loss {r['log_loss']:.4f}, AUC {r['auc']:.3f}")


# ---- the plain pipeline (runs in its own child process) -------------------------------------

def clicks_before(staff: np.ndarray, ts: np.ndarray, clicked: np.ndarray) -> np.ndarray:
    """Each row's person's clicks strictly before its time (rows at the same time, such as
    one request's, do not see each other)."""
    order = np.lexsort((ts, staff))
    s, t, c = staff[order], ts[order], clicked[order].astype(np.int64)
    before = np.cumsum(c) - c
    new_group = np.r_[True, (s[1:] != s[:-1]) | (t[1:] != t[:-1])]
    new_person = np.r_[True, s[1:] != s[:-1]]
    group_first = np.maximum.accumulate(np.where(new_group, np.arange(len(s)), 0))
    person_first = np.maximum.accumulate(np.where(new_person, np.arange(len(s)), 0))
    out = np.empty(len(s), dtype=np.int64)
    out[order] = before[group_first] - before[person_first]
    return out


def plain_design(encoder, attrs: np.ndarray, banner: np.ndarray, clicks: np.ndarray):
    """One-hot attributes and banner, and log(1 + clicks before)."""
    import scipy.sparse as sp

    cats = np.column_stack([attrs, banner])
    return sp.hstack([encoder.transform(cats), sp.csr_matrix(np.log1p(clicks)[:, None])], format="csr")


def plain_pipeline(data: Path, holdout_days: float) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    from recommender.contracts import load_banners, load_impressions, load_staff

    t = time.perf_counter()
    staff = load_staff(data / "staff.csv")
    catalog = load_banners(data / "banners.json")
    log = load_impressions(data / "impressions.jsonl", catalog=catalog)
    load_s = time.perf_counter() - t

    t = time.perf_counter()
    names = ("role", "school_level", "region")
    profiles = [staff.get(s).attributes for s in log.staff_ids]
    person_attrs = np.array([[p.get(a) or "" for a in names] for p in profiles], dtype=object)
    attrs = person_attrs[log.staff]
    clicks = clicks_before(log.staff, log.ts, log.clicked)
    cut = float(log.ts.max()) - holdout_days * 86400.0
    train, valid = log.ts < cut, log.ts >= cut
    encoder = OneHotEncoder(handle_unknown="ignore").fit(np.column_stack([attrs[train], log.banner[train]]))
    X = plain_design(encoder, attrs[train], log.banner[train], clicks[train])
    model = LogisticRegression(max_iter=1000).fit(X, log.clicked[train])
    fit_s = time.perf_counter() - t

    t = time.perf_counter()
    rows = np.flatnonzero(valid)
    p = model.predict_proba(plain_design(encoder, attrs[rows], log.banner[rows], clicks[rows]))[:, 1]
    # rank every held-out request's catalog banners (its person's clicks as of the request)
    req, first = np.unique(log.request[rows], return_index=True)
    req_rows = rows[first]
    banners = np.arange(len(catalog.banners))
    person = np.repeat(log.staff[req_rows], len(banners))
    Xr = plain_design(encoder, person_attrs[person], np.tile(banners, len(req)), np.repeat(clicks[req_rows], len(banners)))
    score = model.decision_function(Xr).reshape(len(req), len(banners))
    top = np.argsort(-score, axis=1, kind="stable")[:, :3]
    rank_s = time.perf_counter() - t
    y = log.clicked[rows]
    return {"load_s": load_s, "fit_s": fit_s, "rank_s": rank_s, "rows": int(train.sum()), "requests_ranked": int(len(req)),
            "top_checksum": int(top.sum()), "log_loss": float(log_loss(y, p, labels=[0, 1])),
            "auc": float(roc_auc_score(y, p))}


# ---- the side-by-side runs -----------------------------------------------------------------

def show(name: str, i: int, r: Run) -> None:
    print(f"  run {i + 1} {name:<5} wall {r.wall_s:7.1f} s   cpu {r.cpu_s:7.1f} s   load {r.load_s:6.1f} s   "
          f"work {r.work_s:7.1f} s   peak {r.peak_gib:5.2f} GiB   {r.quality}", flush=True)


def summary(ours: list[Run], plain: list[Run]) -> None:
    med = lambda runs, f: statistics.median(getattr(r, f) for r in runs)  # noqa: E731
    print(f"\nmedians of {len(ours)} runs:           ours      plain   ours/plain")
    for f, label in (("wall_s", "whole command (s)"), ("cpu_s", "whole command, CPU (s)"), ("load_s", "loading (s)"),
                     ("work_s", "training [+ranking] (s)"), ("peak_gib", "peak RSS (GiB)")):
        a, b = med(ours, f), med(plain, f)
        print(f"  {label:<26} {a:9.2f} {b:9.2f} {a / b:11.2f}")
    pairs = [a.wall_s / b.wall_s for a, b in zip(ours, plain)]
    work = [a.work_s / b.work_s for a, b in zip(ours, plain)]
    print(f"  per-run ratios, whole command: {', '.join(f'{x:.2f}' for x in pairs)}; "
          f"training vs training+ranking: {', '.join(f'{x:.2f}' for x in work)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder with staff.csv, banners.json, impressions.jsonl")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--holdout-days", type=float, default=1.0)
    ap.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_child:
        print(json.dumps(plain_pipeline(args.data, args.holdout_days)))
        return
    env = dict(os.environ, RECOMMENDER_PROGRESS="0", PYTHONPATH=str(ROOT))
    print(f"{args.data}: {args.runs} runs, ours and plain alternating (work = ours: training alone; "
          f"plain: training and ranking together)", flush=True)
    ours, plain = [], []
    for i in range(args.runs):
        ours.append(run_ours(args.data, args.holdout_days, env))
        show("ours", i, ours[-1])
        plain.append(run_plain(args.data, args.holdout_days, env))
        show("plain", i, plain[-1])
    summary(ours, plain)


if __name__ == "__main__":
    main()
