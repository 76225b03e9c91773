"""Drive the real dashboard in Chromium (Playwright with Debian's /usr/bin/chromium): open a
page, wait until it has been drawn, and read every chart's data from the plotly figures in
the DOM. Used by the browser test and by benchmarks/dashboard_bench.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CHROMIUM: Final = Path("/usr/bin/chromium")
#: Every chart container (ui.chart) has this class prefix; the page marks its end.
CHARTS_DRAWN: Final = """() => {
  if (!document.querySelector('.st-key-page-done')) return false;
  return Array.from(document.querySelectorAll('[class*="st-key-chart-"]')).every(c => {
    const el = c.querySelector('.js-plotly-plot');
    return el && el._fullData;
  });
}"""
#: Per chart: its key, and per trace its name and the non-missing values it draws (z cells of
#: a heat map, else y, x, lat or box quartiles), the size of its figure JSON, and the axis
#: labels and titles drawn outside its box.
READ_CHARTS: Final = """() => Array.from(document.querySelectorAll('[class*="st-key-chart-"]'))
 .map(c => {
  const key = c.className.match(/st-key-chart-([\\w-]+)/)[1];
  const el = c.querySelector('.js-plotly-plot');
  const ok = v => v !== null && v !== undefined && v === v;
  const flat = a => {
    if (!a || typeof a !== 'object' || a.length === undefined) return [];
    let out = [];
    for (const r of Array.from(a)) {
      if (r && typeof r === 'object' && r.length !== undefined) out = out.concat(Array.from(r));
      else out.push(r);
    }
    return out;
  };
  const traces = (el._fullData || []).map(t => ({
    name: t.name,
    points: (t.z ? flat(t.z) : flat(t.q1 || t.y || t.x || t.lat)).filter(ok).length,
  }));
  // Axis tick labels and titles drawn outside the chart's own box (cut off on the page).
  const box = el.getBoundingClientRect();
  const clipped = Array.from(el.querySelectorAll(
    '.xtick text, .ytick text, .g-xtitle text, .g-ytitle text'))
   .filter(t => {
     const r = t.getBoundingClientRect();
     return r.width > 0 && (r.left < box.left - 1 || r.right > box.right + 1 ||
                            r.top < box.top - 1 || r.bottom > box.bottom + 1);
   }).map(t => t.textContent);
  return {key, traces, clipped,
          bytes: JSON.stringify({data: el.data, layout: el.layout}).length};
 })"""


@dataclass(frozen=True)
class Chart:
    """What the browser drew for one chart."""

    key: str
    traces: list[tuple[str, int]]
    bytes: int
    #: Axis labels and titles that lie (partly) outside the chart's box: cut off.
    clipped: list[str]

    @property
    def points(self) -> int:
        """Values drawn over all traces."""
        return sum(n for _name, n in self.traces)


@dataclass(frozen=True)
class Drawn:
    """One page as drawn: its charts, error elements, and seconds to the last chart."""

    charts: dict[str, Chart]
    errors: list[str]
    seconds: float


@contextmanager
def dashboard(dsn: str, port: int, root: str | None = None) -> Iterator[str]:
    """`soundscape dashboard` of the checkout at `root` (default this one) on `dsn` at
    127.0.0.1:`port`, until the block ends; its URL."""
    env = dict(os.environ, SOUNDSCAPE_DASHBOARD_DATABASE_URL=dsn)
    root = root or str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root
    cmd = [sys.executable, "-m", "services.cli", "dashboard", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def draw(page: Any, url: str, shot: Path | None = None, timeout_s: float = 60) -> Drawn:
    """Open `url` in the Playwright `page`, wait for its last chart, read the charts."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    began = time.perf_counter()
    page.goto(url)
    try:
        page.wait_for_function(CHARTS_DRAWN, timeout=timeout_s * 1000, polling=50)
    except PlaywrightTimeout:
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{url}: not drawn within {timeout_s:g} s (see {shot})") from None
    seconds = time.perf_counter() - began
    charts = {
        c["key"]: Chart(
            c["key"], [(t["name"], t["points"]) for t in c["traces"]], c["bytes"], c["clipped"]
        )
        for c in page.evaluate(READ_CHARTS)
    }
    errors = page.locator('[data-testid="stException"]').all_inner_texts()
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    return Drawn(charts, errors, seconds)
