"""Benchmark of the ranking service.

Starts the real server (`recommender serve`, uvicorn) with 1 and then 2 workers on a free
loopback port, with 30 candidates per request, and drives it from a second process:
- closed loop: wrk (32 connections, 1 thread) when installed, else a built-in asyncio
  HTTP/1.1 keep-alive client (32 connections); throughput and p50/p99 of POST /v1/rank next to POST /v1/noop (same body, same
  auth, no ranking) on the same server in the same run, in alternating windows (no-op,
  rank, no-op, rank, ...: on a shared machine whose speed drifts, both see the same drift);
- open loop at a fixed rate (default 300 requests/s) with the asyncio client: p50/p99 of
  /v1/rank measured from each request's scheduled send time (no coordinated omission),
  and of /v1/noop at the same rate: what the machine and the HTTP stack alone give;
- in-process: the model's score() for 30 candidates, and the engine's whole rank() call.

    .venv/bin/python benchmarks/bench_service.py                     # stand-in numpy model
    .venv/bin/python benchmarks/bench_service.py --model models/V    # a trained model folder
    .venv/bin/python benchmarks/bench_service.py --province DIR      # its banners, staff, history

Goals: rank throughput >= 60% of the no-op endpoint's; p99 <= 15 ms at 300
requests/s; scoring <= 100 microseconds for 30 candidates.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launcher import ServeProcess

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
KEY = "bench-client-key"
ROLES = ["teacher", "head_teacher", "principal", "admin_officer", "support_staff", "education_specialist",
         "vice_principal"]
LEVELS = ["elementary", "middle", "high", "kindergarten", "special", "office"]
REGIONS = ["Suwon", "Yongin", "Goyang", "Seongnam", "Bucheon", "Ansan", "Paju"]


# -- the load client (runs in its own process) ----------------------------------------
def body_for(i: int, candidates: list[str]) -> dict:
    return {"staff_id": f"s-{i % 20000:06d}",  # the simulator's ids: with --province, people with a history
            "profile": {"role": ROLES[i % 7], "school_level": LEVELS[i % 6], "region": REGIONS[i % 7]},
            "candidates": candidates}


class Connection:
    """One keep-alive HTTP/1.1 connection on loopback, written by hand: an httpx client
    spends more CPU per request than the server's no-op endpoint, so it would measure
    itself. Requests are prepared bytes; the answer's status is read and its body
    skipped by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> "Connection":
        host, port = url.split("//", 1)[1].split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if length is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        await self.reader.readexactly(int(length.group(1)))
        return int(head[9:12])

    def close(self) -> None:
        self.writer.close()


class Requests:
    """The prepared request bytes for request i (bodies vary over 20,000 staff ids)."""

    def __init__(self, url: str, path: str, candidates):
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {url.split('//', 1)[1]}\r\nX-API-Key: {KEY}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.candidates = candidates
        self.cache: dict[int, bytes] = {}

    def __getitem__(self, i: int) -> bytes:
        k = i % 20000
        r = self.cache.get(k)
        if r is None:
            body = json.dumps(body_for(k, self.candidates)).encode()
            r = self.cache[k] = self.head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        return r


async def closed_loop(url: str, path: str, candidates, duration: float, connections: int) -> dict:
    lat: list[float] = []
    errors = 0
    reqs = Requests(url, path, candidates)
    counter = iter(range(10**9))
    conns = [await Connection.open(url) for _ in range(connections)]
    stop = time.perf_counter() + duration

    async def worker(conn: Connection):
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status = await conn.send(reqs[next(counter)])
            lat.append(time.perf_counter() - t)
            errors += status != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    took = time.perf_counter() - t0
    for c in conns:
        c.close()
    return summarize(lat, errors, took)


async def open_loop(url: str, path: str, candidates, duration: float, rate: float, max_in_flight: int = 256) -> dict:
    """Requests sent at a fixed rate whatever the answers' speed; each latency counts from
    when its request was due (no coordinated omission)."""
    lat: list[float] = []
    errors = 0
    kinds: collections.Counter[str] = collections.Counter()
    reqs = Requests(url, path, candidates)
    idle: list[Connection] = []
    sem = asyncio.Semaphore(max_in_flight)

    async def one(i: int, scheduled: float):
        nonlocal errors
        async with sem:
            reused = bool(idle)
            conn = idle.pop() if idle else await Connection.open(url)
            try:
                try:
                    status = await asyncio.wait_for(conn.send(reqs[i]), 10)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if not reused:
                        raise
                    # an idle pooled connection the server closed (uvicorn's keep-alive
                    # timeout is 5 s): what any HTTP client does, send again on a new one
                    conn.close()
                    conn = await Connection.open(url)
                    status = await asyncio.wait_for(conn.send(reqs[i]), 10)
                if status != 200:
                    errors += 1
                    kinds[f"HTTP {status}"] += 1
                idle.append(conn)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError) as e:
                errors += 1
                kinds[type(e).__name__] += 1
                conn.close()
            lat.append(time.perf_counter() - scheduled)

    n = int(duration * rate)
    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    took = time.perf_counter() - t0
    for c in idle:
        c.close()
    return {**summarize(lat, errors, took), "error_kinds": dict(kinds)}


def summarize(lat: list[float], errors: int, took: float) -> dict:
    lat = sorted(lat)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / took, "p50_ms": q(0.50), "p99_ms": q(0.99)}


def combine(windows: list[dict]) -> dict:
    """One closed-loop figure from alternating windows: throughput over their total time;
    p50 and p99 as the medians of the windows' own."""
    took = sum(w["requests"] / w["rps"] for w in windows if w["rps"])
    return {"requests": sum(w["requests"] for w in windows), "errors": sum(w["errors"] for w in windows),
            "rps": sum(w["requests"] for w in windows) / took if took else 0.0,
            "p50_ms": statistics.median(w["p50_ms"] for w in windows),
            "p99_ms": statistics.median(w["p99_ms"] for w in windows)}


def client_main(args) -> None:
    candidates = json.loads(args.candidates)
    if args.rate:
        out = asyncio.run(open_loop(args.url, args.path, candidates, args.duration, args.rate))
    else:
        out = asyncio.run(closed_loop(args.url, args.path, candidates, args.duration, args.connections))
    print(json.dumps(out))


# -- wrk -------------------------------------------------------------------------------
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
local roles = {%(roles)s}
local levels = {%(levels)s}
local regions = {%(regions)s}
local cands = '%(cands)s'
local n = 0
request = function()
  n = n + 1
  local body = '{"staff_id":"' .. string.format("s-%%06d", n %% 20000) .. '","profile":{"role":"' .. roles[(n %% 7) + 1] ..
    '","school_level":"' .. levels[(n %% 6) + 1] .. '","region":"' .. regions[(n %% 7) + 1] ..
    '"},"candidates":' .. cands .. '}'
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, path: str, candidates, duration: float, connections: int, tmp: Path) -> dict:
    script = tmp / f"wrk{path.replace('/', '_')}.lua"
    q = lambda xs: ",".join(f'"{x}"' for x in xs)  # noqa: E731
    script.write_text(WRK_SCRIPT % {"key": KEY, "roles": q(ROLES), "levels": q(LEVELS), "regions": q(REGIONS),
                                    "cands": json.dumps(candidates), "path": path})
    res = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True, check=True)
    text = res.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return {"requests": total, "errors": errors, "rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99")}


# -- setup -----------------------------------------------------------------------------
def add_setup_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``prepare`` reads (shared with bench_service_side_by_side.py)."""
    p.add_argument("--model", help="a trained model folder (models/<version>); default: a numpy stand-in")
    p.add_argument("--province", help="a simulated province: its banners, staff and impressions (history)")
    p.add_argument("--keep-targets", action="store_true",
                   help="keep the province's banner targets: requests of different profiles get different lists")


def prepare(tmp: Path, args) -> tuple[Path, list[str], dict]:
    """A config, a catalog of 30 banners, a registry with the model promoted."""
    sys.path.insert(0, str(ROOT))
    from recommender.contracts import load_banners, write_banners
    from recommender.domain import Banner
    from training.registry import ModelRegistry

    extra = {}
    if args.province:
        prov = Path(args.province)
        # the province's banners with their windows opened, so that all 30 are candidates
        # now (the history features still see the same banner ids), and their targets
        # opened too unless --keep-targets: then each profile has its own eligible list,
        # as in production (the benchmark's 42 profiles have 42 lists in the demo province)
        from dataclasses import replace

        banners = [replace(b, start=None, end=None, target=b.target if args.keep_targets else {})
                   for b in load_banners(prov / "banners.json")]
        write_banners(tmp / "banners.json", banners)
        extra["staff"] = str((prov / "staff.csv").resolve())
        extra["history"] = str((prov / "impressions.jsonl").resolve())
        extra["history_days"] = 3650
    else:
        cats = ["policy", "info", "custom", "survey", "event"]
        banners = [Banner(f"b-{i:02d}", cats[i % 5], f"banner {i}", priority=i % 4) for i in range(30)]
        write_banners(tmp / "banners.json", banners)
    candidates = [b.banner_id for b in banners][:30]
    if len(candidates) < 30:
        candidates += [f"b-extra-{i}" for i in range(30 - len(candidates))]  # cold-start ids
    models = tmp / "models"
    models.mkdir()
    if args.model:
        src = Path(args.model).resolve()
        version = src.name
        shutil.copytree(src, models / version)
        loader = None  # training's own loader, which checks the checksums
        ModelRegistry(models).promote(version)
    else:
        version = "bench-fake-linear"
        (models / version).mkdir()
        (models / version / "metadata.json").write_text(json.dumps({"version": version}))
        loader = "bench_fake_model:load_model"
        ModelRegistry(models).promote(version, verify=False)
    sys.path.insert(0, str(ROOT / "tests"))
    from service_support import config_text

    extra.update(getattr(args, "service_extra", {}))  # config keys a benchmark sets (bench_soak.py)
    service = {"db": "events.db", "models": "models", "banners": "banners.json", "log_salt": "bench", **extra}
    if loader:
        service["model_loader"] = loader
    (tmp / "service.toml").write_text(config_text(service, client_key=KEY, admin_key="bench-admin-key", salt="bench"))
    return tmp / "service.toml", candidates, {"model": version, "loader": loader}


def in_process(config: Path, candidates: list[str], n: int = 3000) -> dict:
    """Median time of the model's score() for 30 candidates (of which the click-history
    lookup, measured alone), and of the engine's whole rank()."""
    from recommender.ranker import CandidateRows
    from recommender.store import open_store
    from service.config import load_config
    from service.engine import RankingEngine

    cfg = load_config(config)
    cfg.db = f"sqlite:///{config.parent / 'inprocess.db'}"
    engine = RankingEngine(cfg, open_store(cfg.db))
    engine.start(background=False)
    try:
        arm = engine.models["A"]
        if arm.scorer is None:
            raise SystemExit(f"the model did not load: {arm.error}")
        attrs = {"role": "teacher", "school_level": "elementary", "region": "Suwon"}
        cands = engine.candidates.get(engine.catalog, attrs, time.time(), candidates).banners
        ids, categories = [b.banner_id for b in cands], [b.category for b in cands]
        score_t, hist_t, rank_t = [], [], []
        for i in range(n):
            staff = f"s-{i % 20000:06d}"
            now = time.time()
            rows = CandidateRows.for_request(staff, attrs, now, cands)  # as the Ranker asks
            t = time.perf_counter()
            arm.scorer.score(rows, engine.online)
            score_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.online.query_person(staff, ids, categories, now)
            hist_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.rank(staff, attrs, candidates)
            rank_t.append(time.perf_counter() - t)
            if i % 500 == 0:
                engine.flush()
        return {"candidates": len(cands), "score_us_p50": statistics.median(score_t[200:]) * 1e6,
                "score_us_p99": sorted(score_t[200:])[int(0.99 * (n - 200))] * 1e6,
                "history_lookup_us_p50": statistics.median(hist_t[200:]) * 1e6,
                "rank_us_p50": statistics.median(rank_t[200:]) * 1e6}
    finally:
        engine.close()


def start_server(config: Path, workers: int, root: Path = ROOT, python: str = sys.executable) -> ServeProcess:
    """``recommender serve`` with the no-op endpoint on a free port, ready and not
    degraded; by default this checkout's code with this Python
    (bench_service_side_by_side.py runs other checkouts and virtualenvs)."""
    sys.path.insert(0, str(ROOT / "tests"))  # the launcher the integration tests use
    from launcher import ServeProcess

    server = ServeProcess(config, workers, extra_args=["--noop-endpoint"], cwd=config.parent, python=python,
                          extra_env={"PYTHONPATH": os.pathsep.join([str(root / "benchmarks"), str(root)])},
                          ready_timeout=120)
    import httpx

    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    if ready["status"] != "ok":
        server.stop()
        raise SystemExit(f"server degraded: {ready['problems']}")
    return server


def load(url: str, path: str, candidates, duration: float, connections: int, rate: float | None, tmp: Path,
         use_wrk: bool) -> dict:
    if use_wrk and not rate:
        return run_wrk(url, path, candidates, duration, connections, tmp)
    cmd = [sys.executable, __file__, "--client", "--url", url, "--path", path, "--duration", str(duration),
           "--connections", str(connections), "--candidates", json.dumps(candidates)]
    if rate:
        cmd += ["--rate", str(rate)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per closed-loop measurement")
    p.add_argument("--alternations", type=int, default=4,
                   help="closed-loop windows per endpoint, alternating no-op and rank (duration split among them)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="runs per worker count (the table shows medians)")
    p.add_argument("--in-process-only", action="store_true", help="only the in-process scoring and rank() timings")
    p.add_argument("--rate", type=float, help="open-loop rate for the p99 goal (default 300)")
    p.add_argument("--client-tool", choices=["auto", "wrk", "python"], default="auto",
                   help="closed-loop load: wrk if installed (auto), else the built-in asyncio client")
    p.add_argument("--json", help="also write the results here")
    # the load client's own options (the benchmark runs itself as the second process)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--candidates", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return client_main(args)
    args.rate = args.rate or 300.0
    use_wrk = args.client_tool == "wrk" or (args.client_tool == "auto" and shutil.which("wrk") is not None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        sys.path.insert(0, str(HERE))
        config, candidates, info = prepare(tmp, args)
        results: dict = {"model": info["model"], "candidates": len(candidates), "tool": "wrk" if use_wrk else "python",
                         "connections": args.connections, "duration_s": args.duration, "cpus": os.cpu_count()}
        results["in_process"] = in_process(config, candidates)
        print(f"in-process ({info['model']}, {results['in_process']['candidates']} candidates): "
              f"score p50 {results['in_process']['score_us_p50']:.0f} us, p99 {results['in_process']['score_us_p99']:.0f} us "
              f"(history lookup alone p50 {results['in_process']['history_lookup_us_p50']:.0f} us); "
              f"engine rank() p50 {results['in_process']['rank_us_p50']:.0f} us", flush=True)
        results["runs"] = []
        for w in ([] if args.in_process_only else args.workers):
            for rep in range(args.repeat):
                server = start_server(config, w)
                try:
                    for path in ("/v1/noop", "/v1/rank"):  # warm-up
                        load(server.url, path, candidates, 2, args.connections, None, tmp, use_wrk)
                    windows: dict[str, list[dict]] = {"/v1/noop": [], "/v1/rank": []}
                    for _ in range(args.alternations):
                        for path in windows:
                            windows[path].append(load(server.url, path, candidates, args.duration / args.alternations,
                                                      args.connections, None, tmp, use_wrk))
                    noop, rank = combine(windows["/v1/noop"]), combine(windows["/v1/rank"])
                    fixed = load(server.url, "/v1/rank", candidates, args.duration, args.connections, args.rate, tmp,
                                 use_wrk)
                    fixed_noop = load(server.url, "/v1/noop", candidates, args.duration, args.connections, args.rate,
                                      tmp, use_wrk)
                finally:
                    server.stop()
                run = {"workers": w, "repetition": rep, "noop": noop, "rank": rank, "rank_at_rate": fixed,
                       "noop_at_rate": fixed_noop, "rate": args.rate, "rank_share_of_noop": rank["rps"] / noop["rps"]}
                results["runs"].append(run)
                print(f"workers={w} #{rep + 1}: noop {noop['rps']:.0f} req/s (p50 {noop['p50_ms']:.2f} ms, p99 "
                      f"{noop['p99_ms']:.2f} ms); rank {rank['rps']:.0f} req/s (p50 {rank['p50_ms']:.2f} ms, p99 "
                      f"{rank['p99_ms']:.2f} ms) = {100 * run['rank_share_of_noop']:.0f}% of noop; at {args.rate:.0f} "
                      f"req/s: p50 {fixed['p50_ms']:.2f} ms, p99 {fixed['p99_ms']:.2f} ms (no-op p99 {fixed_noop['p99_ms']:.2f} ms); errors "
                      f"{noop['errors']}/{rank['errors']}/{fixed['errors']}"
                      f"{' ' + str(fixed.get('error_kinds')) if fixed['errors'] else ''}", flush=True)
        med = statistics.median
        if results["runs"]:
            print(f"\nmedians of {args.repeat} run(s) per row (each run, on one server: no-op and rank in "
                  f"{args.alternations} alternating windows each, then rank and no-op at a fixed rate)")
            print("| workers | no-op req/s | rank req/s | rank/no-op | rank p50 / p99 (closed loop) | "
                  f"rank p50 / p99 at {args.rate:.0f} req/s | no-op p99 at {args.rate:.0f} req/s |")
            print("|---|---|---|---|---|---|---|")
            for w in args.workers:
                rs = [r for r in results["runs"] if r["workers"] == w]
                print(f"| {w} | {med(r['noop']['rps'] for r in rs):.0f} | {med(r['rank']['rps'] for r in rs):.0f} | "
                      f"{100 * med(r['rank_share_of_noop'] for r in rs):.0f}% | "
                      f"{med(r['rank']['p50_ms'] for r in rs):.2f} / {med(r['rank']['p99_ms'] for r in rs):.2f} ms | "
                      f"{med(r['rank_at_rate']['p50_ms'] for r in rs):.2f} / "
                      f"{med(r['rank_at_rate']['p99_ms'] for r in rs):.2f} ms | "
                      f"{med(r['noop_at_rate']['p99_ms'] for r in rs):.2f} ms |")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
