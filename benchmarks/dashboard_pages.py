"""Each dashboard page in Chromium with a fleet: time to the last chart and chart payload.

    .venv/bin/python -m benchmarks.dashboard_bench --pages [--devices 20] [--days 30]
        [--before-root /path/to/a/checkout] [--baseline-root /path/to/another/checkout]

Seeds a throwaway database the way `tests/dashboard/fleet.py` does: 90 minutes of raw rows
per device (1 s levels with bands, 1 s labels, summaries, indices), per-minute rollups for
the 2 days before and hourly rollups for `--days` (what retention leaves of a month), then
starts `soundscape dashboard` and opens every page for every preset range in Chromium
(Playwright, Debian's /usr/bin/chromium), and prints the seconds from navigation to the
last chart drawn in a new browser (nothing cached) and in a second tab (scripts cached; each
tab is a new Streamlit session, so every query runs), the server's own time, the charts,
their data points and the bytes of figure JSON (plotly `data` + `layout` as the browser
holds them), and the load average at the time. Then, per page and range, the phases in a
third tab (ms from navigation: the app module run, the websocket open and its first
message, the dashboard's preload script, plotly.js fetched, the closing marker, the first
and last chart drawn), from an init script that only that tab has.

`--before-root` times the same pages of another checkout (e.g. this one before a change) on
the same database, row by row beside this one's (its row first), with the same measurement.
`--baseline-root` runs the same for another checkout's dashboard (e.g. the single-page
dashboard before this one) on the same database, in the same run; it has no end-of-page
marker, so its time is that of the last change in its charts once the app is idle.
"""

from __future__ import annotations

import contextlib
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


#: Installed in the phases tab before the page's scripts: when the websocket opened and
#: brought its first message, and (polled each animation frame) when the closing marker and
#: each chart were first seen drawn.
PHASES_INIT = """
window.__phases = {ws: null, first: null, done: null, charts: []};
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => { __phases.ws ??= performance.now(); });
      this.addEventListener('message', () => { __phases.first ??= performance.now(); });
    }
  };
  const seen = new Set();
  const tick = () => {
    const now = performance.now();
    if (__phases.done === null && document.querySelector('.st-key-page-done')) __phases.done = now;
    for (const el of document.querySelectorAll('.js-plotly-plot')) {
      if (el._fullData && !seen.has(el)) { seen.add(el); __phases.charts.push(now); }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""
READ_PHASES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const plotly = performance.getEntriesByType('resource')
    .find(r => r.name.includes('/PlotlyChart.') || r.name.includes('/plotly-cartesian.'));
  const mark = performance.getEntriesByName('dashboard-preload')[0];
  const p = window.__phases;
  return {app: nav.domContentLoadedEventEnd, ws: p.ws, first: p.first,
          preload: mark ? mark.startTime : null, plotly: plotly ? plotly.responseEnd : null,
          done: p.done, chart1: p.charts.length ? Math.min(...p.charts) : null,
          last: p.charts.length ? Math.max(...p.charts) : null};
}"""


def _phases(chromium: Any, address: str) -> dict[str, float | None]:
    """Milliseconds from navigation to each phase, in a tab of its own (scripts cached by a
    first tab), so that the polling does not touch the timed tabs."""
    context = chromium.new_context(viewport={"width": 1280, "height": 3000})
    warm = context.new_page()
    draw(warm, address, timeout_s=120)
    warm.close()
    context.add_init_script(PHASES_INIT)
    tab = context.new_page()
    draw(tab, address, timeout_s=120)
    phases: dict[str, float | None] = tab.evaluate(READ_PHASES)
    context.close()
    return phases


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


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


def run(
    pg: str, devices: int, days: float, baseline_root: str | None, before_root: str | None = None
) -> int:
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
                + (" checkout |" if before_root else "")
            )
            print("|---|---|---|---|---|---|---|---|---|" + ("---|" if before_root else ""))
            with contextlib.ExitStack() as servers:
                url = servers.enter_context(dashboard(dsn, free_port()))
                before = before_root and servers.enter_context(
                    dashboard(dsn, free_port(), root=before_root)
                )
                for page_name in PAGES:
                    for preset in RANGES:
                        if before:  # the same row of the other checkout first, then this one
                            print(_measure(chromium, before, page_name, preset) + " before |")
                        row = _measure(chromium, url, page_name, preset)
                        print(row + (" this |" if before else ""))
                print(
                    "\nphases, ms from navigation (a third tab, scripts cached): app module "
                    "run (DOMContentLoaded), websocket open, its first message, the preload "
                    "script, plotly.js fetched, the page's closing marker, first and last "
                    "chart drawn"
                )
                print("| page | range | app | websocket | 1st message | preload | plotly.js "
                      "| closing marker | 1st chart | last chart | load avg |")  # fmt: skip
                print("|---|---|---|---|---|---|---|---|---|---|---|")
                for page_name in PAGES:
                    for preset in RANGES:
                        address = f"{url}/?page={page_name}&range={preset.replace(' ', '+')}"
                        ph = _phases(chromium, address)
                        cells = " | ".join(
                            _ms(ph[k])
                            for k in ("app", "ws", "first", "preload", "plotly", "done",
                                      "chart1", "last")
                        )  # fmt: skip
                        print(f"| {page_name} | {preset} | {cells} | {os.getloadavg()[0]:.1f} |")
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
