"""Dashboard at scale: the 1,000,000-task store of ``history_scale.py`` served by ``runbook serve``,
and how long each page takes.

The heat map shows 10 processors over two years (730 days: the default, the last two years of
the calendar's four). Each page is fetched ``--repeat`` times over HTTP (after one warm-up
request) and the median time to the last byte is kept, with the server's own figures for the work
(``Server-Timing``: wall and CPU time of the thread that answered; the CPU time barely moves with
the machine's load, so it is the figure to compare on a busy machine). With Chromium at
/usr/bin/chromium, the browser's figures are added: time to the last byte of the HTML and to the
end of the load event (scripts, styles and the heat map drawn), medians of as many loads.

    .venv/bin/python bench/serve_scale.py --keep /tmp/history   # reuses history_scale's store
    .venv/bin/python bench/serve_scale.py --runs 8 --tasks 4000 --repeat 1 --json   # a quick look

The target is 300 ms per page. The server keeps the rendered handoff while the store does not
change (docs/serve.md, "Speed"): ``/handoff`` times the kept page, ``/handoff?refresh=1`` the
page rendered again for every request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import httpx  # noqa: E402
from history_scale import build  # noqa: E402

from runbook.state.store import Store  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
TARGET_MS = 300


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    out = root / "serve-bench.out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RUNBOOK_SERVE_TOKEN", None)
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "runbook", "--config", str(root / "runbook.yaml"), "serve", "--port", "0"],
            cwd=root, env=env, stdout=stdout, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in out.read_text(encoding="utf-8").splitlines():
            if "http://" in line:
                return process, "http://" + line.split("http://", 1)[1].rstrip("/")
        if process.poll() is not None:
            raise SystemExit(f"runbook serve exited {process.returncode}")
        time.sleep(0.1)
    process.kill()
    raise SystemExit("runbook serve did not start within 120 s")


def pages(url: str) -> dict[str, str]:
    """What to time: every page, the heat map's cell and the main API answers."""
    newest = httpx.get(f"{url}/api/status", timeout=120).json()["runs"][0]["id"]
    heatmap = httpx.get(f"{url}/api/heatmap", timeout=120).json()
    busiest = heatmap["rows"][2]["processor"]
    return {
        "/ (runs)": "/",
        f"/runs/{newest}": f"/runs/{newest}",
        f"/heatmap ({len(heatmap['rows'])} x {heatmap['days']} days)": "/heatmap",
        "/heatmap/cell (one date's attempts)": f"/heatmap/cell?processor={busiest}&date={heatmap['end']}",
        "/checks": "/checks",
        "/handoff": "/handoff",  # kept by the server while the store does not change
        "/handoff?refresh=1": "/handoff?refresh=1",  # rendered again for every request
        "/api/status": "/api/status",
        f"/api/heatmap ({heatmap['days']} days)": "/api/heatmap",
        f"/api/coverage/{busiest}": f"/api/coverage/{busiest}",
    }


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def server_timing(header: str) -> dict[str, float]:
    """``work;dur=12.3, cpu;dur=10.1`` as {"work": 12.3, "cpu": 10.1} (milliseconds)."""
    found = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            found[name] = float(duration)
    return found


def measure_http(url: str, targets: dict[str, str], repeat: int) -> dict[str, dict[str, float]]:
    """Per page: the wall time to the last byte, and the server's own figures for the work (wall
    and CPU time of the thread that answered: the CPU time barely moves with the machine's load)."""
    found = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for label, path in targets.items():
            client.get(path).raise_for_status()  # warm-up: the first visit compiles and caches
            times, work, cpu = [], [], []
            for _ in range(repeat):
                begin = time.perf_counter()
                answer = client.get(path)
                answer.raise_for_status()
                times.append(time.perf_counter() - begin)
                timing = server_timing(answer.headers.get("server-timing", ""))
                work.append(timing.get("work", 0.0) / 1000)
                cpu.append(timing.get("cpu", 0.0) / 1000)
            found[label] = {"http_ms": median_ms(times), "work_ms": median_ms(work), "cpu_ms": median_ms(cpu)}
    return found


def measure_browser(url: str, targets: dict[str, str], repeat: int) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    found: dict[str, dict[str, float]] = {}
    script = "() => { const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.loadEventEnd]; }"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for label, path in targets.items():
            if path.startswith("/api/"):
                continue
            page.goto(url + path)
            html, loaded = [], []
            for _ in range(repeat):
                page.goto(url + path, wait_until="load")
                response_end, load_end = page.evaluate(script)
                html.append(response_end / 1000)
                loaded.append(load_end / 1000)
            found[label] = {"html_ms": median_ms(html), "load_ms": median_ms(loaded)}
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--keep", metavar="DIR", help="Build in DIR and keep it; reuse it if it is already built."
    )
    parser.add_argument("--no-browser", action="store_true", help="Only the HTTP figures.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="runbook-serve-"))
    process = None
    try:
        if not (root / "state" / "runbook.db").exists():
            build(root, args.runs, args.tasks).close()
        store = Store.open(f"sqlite:///{root / 'state' / 'runbook.db'}")
        counts = {table: store.db.scalar(f"SELECT COUNT(*) FROM {table}") for table in ("run", "task")}
        store.close()
        process, url = start_server(root)
        targets = pages(url)
        load = os.getloadavg()[0]
        report: dict[str, Any] = {
            "store": counts,
            "load_average": round(load, 2),
            "pages": measure_http(url, targets, args.repeat),
        }
        if CHROMIUM.exists() and not args.no_browser:
            for label, seen in measure_browser(url, targets, args.repeat).items():
                report["pages"][label].update(seen)
        report["load_average_after"] = round(os.getloadavg()[0], 2)
        if args.json:
            print(json.dumps(report, indent=2))
            return
        print(
            f"store: {counts['run']:,} runs, {counts['task']:,} tasks; medians of {args.repeat}; "
            f"load average {report['load_average']} then {report['load_average_after']} on {os.cpu_count()} CPUs"
        )
        columns = ("http_ms", "work_ms", "cpu_ms", "html_ms", "load_ms")
        print(f"  {'page':<40}" + "".join(f"{name.replace('_ms', ''):>10}" for name in columns) + "  (ms)")
        for label, figures in report["pages"].items():
            cells = "".join(f"{figures[name]:>10.1f}" if name in figures else f"{'':>10}" for name in columns)
            slow = max(figures.get("load_ms", 0), figures["http_ms"]) > TARGET_MS
            print(f"  {label:<40}{cells}" + ("  over 300 ms" if slow else ""))
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
