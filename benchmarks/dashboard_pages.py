"""Each dashboard page in Chromium with a fleet: time to the last chart and chart payload.

    .venv/bin/python -m benchmarks.dashboard_bench --pages [--devices 20] [--days 30]
        [--baseline-root /path/to/another/checkout]

Seeds a throwaway database the way `tests/dashboard/fleet.py` does: 90 minutes of raw rows
per device (1 s levels with bands, 1 s labels, summaries, indices), per-minute rollups for
the 2 days before and hourly rollups for `--days` (what retention leaves of a month), then
starts `soundscape dashboard` and opens every page for every preset range in Chromium
(Playwright, Debian's /usr/bin/chromium), and prints the seconds from navigation to the
last chart drawn in a new browser (nothing cached) and in a second tab (scripts cached; each
tab is a new Streamlit session, so every query runs), the server's own time, the charts,
their data points and the bytes of figure JSON (plotly `data` + `layout` as the browser
holds them), and the load average at the time.

`--baseline-root` runs the same for another checkout's dashboard (e.g. the single-page
dashboard before this one) on the same database, in the same run; it has no end-of-page
marker, so its time is that of the last change in its charts once the app is idle.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import psycopg

from services.ingest.db import migrate
from tests.dashboard.browser import CHROMIUM, dashboard, draw
from tests.dashboard.fleet import seed_fleet
from tests.support.servers import free_port

PAGES = ("Overview", "Device", "Health")
RANGES = ("Last hour", "Last day", "Last week", "Last 30 days")
#: The single page of an older checkout: idle and unchanged for this long means drawn.
SETTLE_S = 2.0
IDLE_STATE = """() => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const points = plots.map(p => (p._fullData || []).length).join(',');
  const bytes = plots.map(p => JSON.stringify({d: p.data, l: p.layout}).length)
    .reduce((a, b) => a + b, 0);
  return {running: !!running, charts: plots.length, points, bytes,
          drawn: plots.every(p => p._fullData)};
}"""


def _baseline(page: Any, url: str, timeout_s: float = 180) -> tuple[float, int, int]:
    """(seconds to the last chart change, charts, bytes) of a page without a done marker."""
    began = time.perf_counter()
    page.goto(url)
    last, last_change = None, time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        state = page.evaluate(IDLE_STATE)
        key = (state["charts"], state["points"], state["bytes"])
        if key != last:
            last, last_change = key, time.perf_counter()
        elif (
            not state["running"]
            and state["drawn"]
            and state["charts"]
            and time.perf_counter() - last_change > SETTLE_S
        ):
            return last_change - began, state["charts"], state["bytes"]
        time.sleep(0.1)
    return float("nan"), -1, -1


def _measure(chromium: Any, url: str, page_name: str, preset: str) -> str:
    """One table row: the page at `preset` in a new browser context (empty HTTP cache: the
    page's scripts, plotly.js among them, are fetched and compiled), then in a second tab of
    that context (a returning viewer: scripts cached); each tab is a new Streamlit session,
    so every query runs. Also the server's own time (the page's closing caption)."""
    address = f"{url}/?page={page_name}&range={preset.replace(' ', '+')}"
    context = chromium.new_context(viewport={"width": 1280, "height": 3000})
    times = []
    for _tab in range(2):
        tab = context.new_page()
        drawn = draw(tab, address, timeout_s=120)
        server = tab.locator(".st-key-page-done").inner_text()
        tab.close()
        times.append(drawn.seconds)
    context.close()
    charts = drawn.charts.values()
    size = sum(c.bytes for c in charts)
    errors = f" errors: {drawn.errors}" if drawn.errors else ""
    server_s = server.split(" in ")[-1].rstrip(".")
    return (
        f"| {page_name} | {preset} | {times[0]:.2f} s | {times[1]:.2f} s | {server_s} "
        f"| {len(drawn.charts)} | {sum(c.points for c in charts):,} | {size / 1e3:,.0f} kB "
        f"| {os.getloadavg()[0]:.1f} |{errors}"
    )


def run(pg: str, devices: int, days: float, baseline_root: str | None) -> int:
    """Seed, measure, print; the exit status."""
    if not CHROMIUM.exists():
        print(f"no Chromium at {CHROMIUM}: apt-get install chromium")
        return 2
    from playwright.sync_api import sync_playwright

    name = f"bench_pages_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg.rsplit("/", 1)[0] + "/" + name
    try:
        t0 = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        seed_fleet(dsn, devices, minute_hours=48, hour_days=days)
        print(
            f"seeded {devices} devices: 90 min raw, 2 days of minute rollups, {days:g} days "
            f"of hourly rollups, in {time.perf_counter() - t0:.1f} s; "
            f"load average {os.getloadavg()[0]:.2f} (2 cores, shared)\n"
        )
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            print(
                "| page | range | to last chart, new browser | same, scripts cached "
                "| server (queries + layout) | charts | points | chart JSON | load avg |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            with dashboard(dsn, free_port()) as url:
                for page_name in PAGES:
                    for preset in RANGES:
                        print(_measure(chromium, url, page_name, preset))
            if baseline_root:
                print(f"\nbaseline: the dashboard of {baseline_root}, same database")
                print("| range | time to last chart | charts | chart JSON |")
                print("|---|---|---|---|")
                with dashboard(dsn, free_port(), root=baseline_root) as url:
                    for _attempt in range(2):  # the first warms the server's imports
                        page = chromium.new_page(viewport={"width": 1280, "height": 3000})
                        seconds, n, size = _baseline(page, url)
                        page.close()
                    # the older page has no URL parameter for its range: its default
                    print(f"| Last day (default) | {seconds:.1f} s | {n} | {size / 1e3:,.0f} kB |")
            chromium.close()
    finally:
        with psycopg.connect(pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0
