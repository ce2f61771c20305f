"""Soak and overload of the ranking service (not part of the test run).

Soak: the real server (`recommender serve`) for --minutes (default 30) at a
fixed rate of rank requests (default 300/s, 30 candidates each) and click events (default
30/s, for rankings just served), sent open loop from a second process: each latency
counts from when its request was due. Reported: errors (any answer but 200), p50/p99 of
rank and events per minute and overall, the rate answered, and the resident memory of
the server's processes: after the warm-up (--warmup seconds, default 60), its peak, at
the end, the growth from warm-up to end in MB (and by mapping: heap, anonymous memory,
each file mapped), and its slope over the second half. The
service's own bound on rankings open to clicks applies (500,000) unless
--max-open-rankings says otherwise.

Overload: the server's capacity measured closed loop (32 connections), then rank requests
open loop at --overload-factor (default 3) times that for --overload-duration seconds:
the share answered 503 (shed), the p50/p99 of what was admitted (200), any other answer,
and memory before and after.

    .venv/bin/python benchmarks/bench_soak.py [--minutes 30] [--rate 300] [--event-rate 30]
        [--max-open-rankings 500000] [--model models/V] [--province DIR] [--workers 1] [--skip-soak] [--skip-overload]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_service import KEY, Connection, Requests, add_setup_arguments, prepare, start_server  # noqa: E402


def _with_children(root_pid: int) -> list[int]:
    """A process and its children (the workers)."""
    out = subprocess.run(["pgrep", "-P", str(root_pid)], capture_output=True, text=True).stdout.split()
    return [root_pid, *(int(p) for p in out)]


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its children (the workers), in MB."""
    total = 0
    for pid in _with_children(root_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        m = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(m.group(1)) if m else 0
    return total / 1024


def rss_by_mapping(root_pid: int) -> dict[str, float]:
    """Resident memory of a process and its children by what is mapped (from
    /proc/PID/smaps): [heap], [anon] (other anonymous memory: thread arenas, numpy's
    large arrays), or a file's name (shared libraries, SQLite's -shm), in MB."""
    kinds: dict[str, float] = collections.defaultdict(float)
    for pid in _with_children(root_pid):
        try:
            text = Path(f"/proc/{pid}/smaps").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        label = "[anon]"
        for line in text.splitlines():
            head = line.split(None, 5)
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                label = Path(head[5]).name if len(head) == 6 and head[5].startswith("/") else (
                    head[5] if len(head) == 6 else "[anon]")
            elif line.startswith("Rss:"):
                kinds[label] += int(line.split()[1]) / 1024
    return dict(kinds)


class MemorySampler(threading.Thread):
    """RSS every ``every`` seconds; and what it is made of (``rss_by_mapping``) at the
    first sample from ``warmup`` seconds on and when told to stop (before the server is)."""

    def __init__(self, pid: int, every: float = 2.0, warmup: float = 60.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.warmup = pid, every, warmup
        self.samples: list[tuple[float, float]] = []
        self.mappings: dict[str, dict[str, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            t = time.monotonic() - t0
            if t >= self.warmup and "warm" not in self.mappings:
                self.mappings["warm"] = rss_by_mapping(self.pid)
            self.samples.append((t, rss_mb(self.pid)))
            self.stop.wait(self.every)
        if "warm" in self.mappings:
            self.mappings["end"] = rss_by_mapping(self.pid)


class BodyConnection(Connection):
    """A keep-alive connection that also reads the answer's body (the rank answer names
    the request and the banners a click refers to)."""

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        body = await self.reader.readexactly(int(length.group(1))) if length else b""
        return int(head[9:12]), body


def event_request(url: str, event: dict) -> bytes:
    body = json.dumps({"events": [event]}).encode()
    return (f"POST /v1/events HTTP/1.1\r\nHost: {url.split('//', 1)[1]}\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def open_loop(url: str, candidates: list[str], duration: float, rate: float, event_rate: float,
                    max_in_flight: int = 256) -> dict:
    """Rank requests at ``rate``/s and, for every rate/event_rate-th answer, a click on its
    first banner; latencies from each request's due time, per minute. At most
    ``max_in_flight`` requests at once, each on a keep-alive connection of its own, as a
    banner server's connection pool: beyond it, requests wait in the client."""
    reqs = Requests(url, "/v1/rank", candidates)
    idle: list[BodyConnection] = []
    sem = asyncio.Semaphore(max_in_flight)
    out = {kind: collections.defaultdict(list) for kind in ("rank", "events")}
    codes: collections.Counter[str] = collections.Counter()
    every = max(int(round(rate / event_rate)), 1) if event_rate else 0
    tasks: list[asyncio.Task] = []
    t0 = time.perf_counter()

    async def send(kind: str, request: bytes, due: float) -> bytes | None:
        async with sem:
            sent = time.perf_counter()  # later than due when the client itself falls behind
            conn = idle.pop() if idle else None
            try:
                if conn is None:
                    conn = await BodyConnection.open(url)
                try:
                    status, body = await asyncio.wait_for(conn.exchange(request), 30)
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn.close()  # an idle connection the server closed: send again on a new one
                    conn = await BodyConnection.open(url)
                    status, body = await asyncio.wait_for(conn.exchange(request), 30)
                idle.append(conn)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                codes[f"{kind} {type(e).__name__}"] += 1
                if conn is not None:
                    conn.close()
                return None
            codes[f"{kind} {status}"] += 1
            out[kind][status].append((due - t0, time.perf_counter() - due, time.perf_counter() - sent))
            return body if status == 200 else None

    async def rank_then_click(i: int, due: float) -> None:
        body = await send("rank", reqs[i], due)
        if body is not None and every and i % every == 0:
            answer = json.loads(body)
            if answer["ranking"]:
                event = {"event_id": f"soak-{i}", "request_id": answer["request_id"],
                         "banner_id": answer["ranking"][0]["banner_id"]}
                await send("events", event_request(url, event), time.perf_counter())

    lags: list[float] = []
    running = True

    async def watch_own_lag():  # how late this client's own event loop runs its callbacks
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    watcher = asyncio.create_task(watch_own_lag())
    n = int(duration * rate)
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(rank_then_click(i, due)))
    await asyncio.gather(*tasks)
    running = False
    await watcher
    for c in idle:
        c.close()
    return {"codes": dict(codes), "latency": {k: {str(s): v for s, v in by.items()} for k, by in out.items()},
            "client_lag_p99_ms": quantiles(lags)[1]}


async def closed_loop_rps(url: str, candidates: list[str], duration: float, connections: int = 32) -> float:
    """Rankings answered 200 per second, with ``connections`` clients sending back to back
    (a connection the server closes after a 503 is opened again)."""
    reqs = Requests(url, "/v1/rank", candidates)
    served = 0
    stop = time.perf_counter() + duration

    async def worker(k: int):
        nonlocal served
        conn = await BodyConnection.open(url)
        i = k
        while time.perf_counter() < stop:
            try:
                status, _ = await conn.exchange(reqs[i])
                served += status == 200
            except (asyncio.IncompleteReadError, ConnectionError):
                conn.close()
                conn = await BodyConnection.open(url)
            i += connections
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return served / (time.perf_counter() - t0)


def quantiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    v = sorted(values)
    return v[len(v) // 2] * 1000, v[min(len(v) - 1, int(0.99 * len(v)))] * 1000


def client_main(args) -> None:
    """The load client, run as its own process so that it does not share the server's."""
    candidates = json.loads(args.candidates)
    if args.client == "capacity":
        print(json.dumps({"rps": asyncio.run(closed_loop_rps(args.url, candidates, args.duration))}))
    else:
        print(json.dumps(asyncio.run(open_loop(args.url, candidates, args.duration, args.rate, args.event_rate))))


def run_client(url: str, candidates: list[str], mode: str, duration: float, rate: float = 0.0,
               event_rate: float = 0.0) -> dict:
    cmd = [sys.executable, __file__, "--client", mode, "--url", url, "--candidates", json.dumps(candidates),
           "--duration", str(duration), "--rate", str(rate), "--event-rate", str(event_rate)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def report_growth(mappings: dict[str, dict[str, float]]) -> dict[str, float]:
    """What grew from the warm-up to the end, by mapping (MB), largest first."""
    warm, end = mappings.get("warm", {}), mappings.get("end", {})
    growth = {k: end.get(k, 0.0) - warm.get(k, 0.0) for k in {*warm, *end}}
    growth = dict(sorted(((k, v) for k, v in growth.items() if abs(v) >= 0.05), key=lambda kv: -abs(kv[1])))
    if growth:
        print("RSS growth after the warm-up, by mapping: " + ", ".join(f"{k} {v:+.1f} MB" for k, v in growth.items()))
    return growth


def report_soak(result: dict, memory: list[tuple[float, float]], warmup: float, seconds: float) -> dict:
    codes = result["codes"]
    errors = {k: v for k, v in codes.items() if not k.endswith(" 200")}
    lat = result["latency"]
    rank = [(t, d) for t, d, _ in lat["rank"].get("200", [])]
    events = [(t, d) for t, d, _ in lat["events"].get("200", [])]
    minutes = sorted({int(t // 60) for t, _ in rank})
    print("| minute | rank requests | rank p50 / p99 (ms) | events | events p50 / p99 (ms) |")
    print("|---|---|---|---|---|")
    for m in minutes:
        r = [d for t, d in rank if int(t // 60) == m]
        e = [d for t, d in events if int(t // 60) == m]
        print(f"| {m + 1} | {len(r):,} | {quantiles(r)[0]:.2f} / {quantiles(r)[1]:.2f} | {len(e):,} | "
              f"{quantiles(e)[0]:.2f} / {quantiles(e)[1]:.2f} |")
    after = [(t, m) for t, m in memory if t >= warmup]
    half = [(t, m) for t, m in after if t >= (after[0][0] + after[-1][0]) / 2] if after else []
    slope = 0.0
    if len(half) > 2:
        ts, ms = zip(*half)
        mt, mm = statistics.fmean(ts), statistics.fmean(ms)
        slope = sum((t - mt) * (m - mm) for t, m in half) / sum((t - mt) ** 2 for t in ts) * 60
    summary = {
        "rank_requests": sum(v for k, v in codes.items() if k.startswith("rank")),
        "events": sum(v for k, v in codes.items() if k.startswith("events")),
        "errors": errors,
        "rank_p50_ms": quantiles([d for _, d in rank])[0], "rank_p99_ms": quantiles([d for _, d in rank])[1],
        "events_p50_ms": quantiles([d for _, d in events])[0], "events_p99_ms": quantiles([d for _, d in events])[1],
        "rss_start_mb": after[0][1] if after else float("nan"), "rss_peak_mb": max(m for _, m in after) if after else 0,
        "rss_end_mb": after[-1][1] if after else float("nan"), "rss_slope_second_half_mb_per_min": slope,
    }
    summary["rss_growth_mb"] = summary["rss_end_mb"] - summary["rss_start_mb"]
    summary["rank_per_s"] = len(rank) / seconds
    summary["seconds"] = seconds
    print(f"\nsoak: {summary['rank_requests']:,} rank requests and {summary['events']:,} event posts; "
          f"errors: {errors or 'none'}; rank p50 {summary['rank_p50_ms']:.2f} ms, p99 {summary['rank_p99_ms']:.2f} ms; "
          f"events p50 {summary['events_p50_ms']:.2f} ms, p99 {summary['events_p99_ms']:.2f} ms; RSS after "
          f"{warmup:.0f} s warm-up {summary['rss_start_mb']:.0f} MB, peak {summary['rss_peak_mb']:.0f} MB, end "
          f"{summary['rss_end_mb']:.0f} MB, second-half slope {slope:+.2f} MB/min")
    print(f"soak of {seconds / 60:g} minutes: {summary['rank_per_s']:.1f} rank requests answered 200 a second; RSS "
          f"{summary['rss_start_mb']:.1f} MB after the warm-up, {summary['rss_end_mb']:.1f} MB at the end: growth "
          f"{summary['rss_growth_mb']:+.1f} MB")
    return summary


def server_p99_ms(metrics_text: str, endpoint: str = "/v1/rank") -> float:
    """The p99 of the server's own latency histogram (from each request's read to its
    answer), as the upper bound of the bucket it falls in."""
    buckets = []
    for m in re.finditer(r'recommender_http_request_duration_seconds_bucket\{endpoint="([^"]+)",le="([^"]+)"\} (\S+)',
                         metrics_text):
        if m.group(1) == endpoint:
            buckets.append((float(m.group(2)), float(m.group(3))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if count >= 0.99 * total:
            return le * 1000
    return float("nan")


def report_overload(capacity: float, factor: float, result: dict, rss: tuple[float, float], server_p99: float) -> dict:
    codes = result["codes"]
    sent = sum(v for k, v in codes.items() if k.startswith("rank"))
    shed = codes.get("rank 503", 0)
    # the last second's requests are left out: the client reads their answers while it winds
    # down, late by its own work (the server's histogram, printed too, has no such edge)
    last = max((t for t, _, _ in result["latency"]["rank"].get("200", [])), default=0.0)
    admitted = [x for x in result["latency"]["rank"].get("200", []) if x[0] < last - 1.0]
    other = {k: v for k, v in codes.items() if k.startswith("rank") and k not in ("rank 200", "rank 503")}
    due50, due99 = quantiles([d for _, d, _ in admitted])
    p50, p99 = quantiles([x for _, _, x in admitted])
    summary = {"capacity_rps": capacity, "offered_rps": capacity * factor, "sent": sent, "shed": shed,
               "shed_share": shed / sent if sent else 0.0, "admitted": len(admitted), "admitted_p50_ms": p50,
               "admitted_p99_ms": p99, "admitted_from_due_p50_ms": due50, "admitted_from_due_p99_ms": due99,
               "server_p99_ms_bucket": server_p99, "client_lag_p99_ms": result["client_lag_p99_ms"], "other": other, "rss_before_mb": rss[0], "rss_after_mb": rss[1]}
    print(f"\noverload: capacity {capacity:.0f} req/s (closed loop, 32 connections); offered {capacity * factor:.0f} "
          f"req/s: {sent:,} sent, {shed:,} shed with 503 ({100 * summary['shed_share']:.0f}%), {len(admitted):,} "
          f"admitted: p50 {p50:.2f} ms, p99 {p99:.2f} ms from their send (p50 {due50:.0f} ms, p99 {due99:.0f} ms from "
          f"when they were due: the client's own lag at this rate included); server's own p99 <= {server_p99:.1f} ms "
          f"(its histogram); the client's own event loop ran late by {result['client_lag_p99_ms']:.0f} ms at p99; "
          f"other answers: {other or 'none'}; RSS {rss[0]:.0f} -> {rss[1]:.0f} MB")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setup_arguments(p)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--minutes", type=float, default=30.0, help="soak minutes")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of the soak before memory counts")
    p.add_argument("--rate", type=float, default=300.0, help="rank requests per second in the soak")
    p.add_argument("--event-rate", type=float, default=30.0, help="click events per second in the soak")
    p.add_argument("--overload-factor", type=float, default=3.0)
    p.add_argument("--overload-duration", type=float, default=60.0)
    p.add_argument("--max-open-rankings", type=int, default=500_000,
                   help="the service's bound on rankings open to clicks (its default: 500,000)")
    p.add_argument("--skip-soak", action="store_true")
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--client", choices=["capacity", "open"], help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # the client's seconds
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--candidates", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return client_main(args)
    args.service_extra = {"max_open_rankings": args.max_open_rankings}
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    results: dict = {}
    try:
        config, candidates, info = prepare(tmp, args)
        results["model"] = info["model"]
        if not args.skip_soak:
            server = start_server(config, args.workers)
            sampler = MemorySampler(server.proc.pid, warmup=args.warmup)
            sampler.start()
            try:
                res = run_client(server.url, candidates, "open", args.minutes * 60, args.rate, args.event_rate)
            finally:
                sampler.stop.set()
                sampler.join()
                server.stop()
            results["soak"] = report_soak(res, sampler.samples, args.warmup, args.minutes * 60)
            results["soak"]["rss_growth_by_mapping_mb"] = report_growth(sampler.mappings)
        if not args.skip_overload:
            server = start_server(config, args.workers)
            try:
                run_client(server.url, candidates, "capacity", 5)  # warm-up
                capacity = run_client(server.url, candidates, "capacity", 10)["rps"]
                before = rss_mb(server.proc.pid)
                res = run_client(server.url, candidates, "open", args.overload_duration,
                                 capacity * args.overload_factor, 0)
                after = rss_mb(server.proc.pid)
                with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
                    p99 = server_p99_ms(r.read().decode())
            finally:
                server.stop()
            results["overload"] = report_overload(capacity, args.overload_factor, res, (before, after), p99)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
