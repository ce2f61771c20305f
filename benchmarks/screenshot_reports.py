"""Render an HTML report (a training report.html or an offline A/B report) to a PNG with
headless Chromium, to look at its plots and labels as a browser draws them.

    .venv/bin/python benchmarks/screenshot_reports.py models/VERSION/report.html [--out report.png]

Installs nothing: it needs Debian's chromium (apt-get install chromium)."""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
MAX_HEIGHT = 16000  # keeps the window, and the PNG, of a sane size


def _count(page: str, tag: str) -> int:
    return len(re.findall(rf"<{tag}[\s>]", page))


def estimated_height(page: str) -> int:
    """A height that holds the whole page: a headless screenshot captures the window only,
    and this script runs no script in the page to measure it. The surplus stays blank."""
    svg = sum(float(h) for h in re.findall(r'<svg[^>]*\sheight="([\d.]+)"', page))
    rows = _count(page, "tr") * 26
    blocks = _count(page, "h1") * 80 + (_count(page, "h2") + _count(page, "h3")) * 55
    text = (_count(page, "p") + _count(page, "div")) * 60 + _count(page, "li") * 24
    return int(min(max(svg + rows + blocks + text + 200, 800), MAX_HEIGHT))


def screenshot(report: Path, out: Path, width: int = 1200, height: int | None = None, timeout: float = 120.0) -> Path:
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("chromium is not installed; install it with: apt-get install chromium")
    height = height or estimated_height(report.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="report-shot-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={width},{height}",
               f"--screenshot={out.resolve()}", report.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(f"{browser} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path, help="the HTML report")
    p.add_argument("--out", type=Path, help="the PNG (default: the report's path with .png)")
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, help="window height in pixels (default: estimated from the page)")
    args = p.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report}: no such file", file=sys.stderr)
        return 2
    out = screenshot(args.report, args.out or args.report.with_suffix(".png"), args.width, args.height)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
