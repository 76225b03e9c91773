"""The dashboard in a real browser: Chromium (Debian's, driven by Playwright) opens every page
of `soundscape dashboard` on a seeded fleet, checks that each chart holds the expected
number of data points and that no error element is shown, and saves a screenshot of each
page under `$SOUNDSCAPE_TEST_ARTIFACTS` (or the test's tmp_path)."""

from __future__ import annotations

import http.server
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import psycopg
import pytest

from services.dashboard.core import BUCKET_ORIGIN
from tests.dashboard.browser import CHROMIUM, Drawn, dashboard, draw
from tests.dashboard.fleet import BANDS_WITH_VALUES, LABELS, Fleet, seed_fleet
from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    """Where the screenshots go."""
    root = os.environ.get("SOUNDSCAPE_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium page (1280 x 4400, so a screenshot holds the whole page)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (scripts/bootstrap.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium.new_page(viewport={"width": 1280, "height": 4400})
        finally:
            chromium.close()


def _count(dsn: str, query: str, *params: Any) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def _pages(url: str, fleet: Fleet) -> dict[str, str]:
    first = fleet.devices[0]
    return {
        "overview": f"{url}/?page=Overview",
        "device": f"{url}/?page=Device&device={first}",
        "health": f"{url}/?page=Health",
    }


def test_every_page_draws_its_charts_in_chromium(
    schema_db: str, browser: Any, artefacts: Path
) -> None:
    # Hourly history starts inside the default "Last day": every count below is exact.
    fleet = seed_fleet(schema_db, 4, minute_hours=20, hour_days=0.8)
    first = fleet.devices[0]
    drawn: dict[str, Drawn] = {}
    requested: list[str] = []
    browser.on("request", lambda request: requested.append(request.url))
    with dashboard(schema_db, free_port()) as url:
        for name, address in _pages(url, fleet).items():
            # Generous: a loaded CI machine; the benchmark measures the speed.
            drawn[name] = draw(browser, address, artefacts / f"{name}.png", timeout_s=150)
        # The health page is open: its chart's CSV is written when the button is clicked.
        with browser.expect_download(timeout=60_000) as download:
            browser.locator('.st-key-chart-gaps [data-testid="stDownloadButton"] button').click()
        csv = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    # Offline: every request the pages make (scripts, fonts, data) goes to the dashboard.
    elsewhere = {u for u in requested if urlsplit(u).scheme not in ("data", "blob")}
    elsewhere = {u for u in elsewhere if urlsplit(u).hostname != "127.0.0.1"}
    assert requested and not elsewhere
    assert download.value.suggested_filename == "gaps.csv"
    assert csv[0].split(",")[:2] == ["device", "kind"]
    assert sorted(line.split(",")[0] for line in csv[1:]) == fleet.devices[:2]
    for name, page in drawn.items():
        assert page.errors == [], f"{name}: {page.errors}"
        assert (artefacts / f"{name}.png").stat().st_size > 10_000

    overview = drawn["overview"].charts
    assert set(overview) == {"map", "fleet-levels", "classes"}
    assert overview["map"].points == len(fleet.devices) + 1  # the spare too, marked
    assert dict(overview["map"].traces).get("never seen") == 1
    shown = [n for n, _ in overview["fleet-levels"].traces]
    assert sorted(shown) == fleet.devices  # four devices: all among the five loudest
    minutes = _count(
        schema_db, "SELECT count(*) FROM levels_minute WHERE device = ANY(%s)", fleet.devices
    )
    assert overview["fleet-levels"].points == minutes
    assert overview["classes"].points == len(LABELS)

    device = drawn["device"].charts
    assert list(device) == ["levels", "hour-class", "spectrogram", "indices", "class-levels"]
    levels = dict(device["levels"].traces)
    assert levels["LAeq"] == _count(
        schema_db, "SELECT count(*) FROM levels_minute WHERE device = %s", first
    )
    summaries = _count(schema_db, "SELECT count(*) FROM level_summaries WHERE device = %s", first)
    assert levels["L90"] == levels["L10-L90"] == levels["LAFmax"] == summaries
    assert device["hour-class"].points == 12 * 24
    # The last day in 10-minute buckets of the per-minute rollup's band means.
    spectrogram_buckets = _count(
        schema_db,
        "SELECT count(DISTINCT date_bin(interval '10 minutes', bucket, %s)) FROM levels_minute"
        " WHERE device = %s AND bands IS NOT NULL",
        BUCKET_ORIGIN,
        first,
    )
    assert spectrogram_buckets > 0
    assert device["spectrogram"].points == BANDS_WITH_VALUES * spectrogram_buckets
    hours = _count(schema_db, "SELECT count(*) FROM indices_hourly WHERE device = %s", first)
    assert device["indices"].points == 8 * hours
    assert device["class-levels"].points == 10

    health = drawn["health"].charts
    assert list(health) == ["gaps"]
    assert health["gaps"].points == 2  # one cause, two devices

    for name, page in drawn.items():
        for chart in page.charts.values():
            assert chart.bytes < 1_000_000, f"{name} {chart.key}: {chart.bytes} bytes"
            # Every axis label and title inside the chart: margins grow to hold them.
            assert chart.clipped == [], f"{name} {chart.key}: cut off {chart.clipped}"


class _Tiles(http.server.BaseHTTPRequestHandler):
    """A MapLibre style naming one raster source, and its tiles (every one a green square),
    as a tile server of the viewer's own would serve them (cross-origin: CORS allowed)."""

    png: ClassVar[bytes] = b""
    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requested.append(self.path)
        host = f"http://127.0.0.1:{cast(tuple[str, int], self.server.server_address)[1]}"
        if self.path == "/style.json":
            source = {"type": "raster", "tiles": [host + "/tiles/{z}/{x}/{y}.png"], "tileSize": 256}
            style = {
                "version": 8,
                "sources": {"local": source},
                "layers": [{"id": "local", "type": "raster", "source": "local"}],
            }
            body, kind = json.dumps(style).encode(), "application/json"
        elif self.path.startswith("/tiles/"):
            body, kind = self.png, "image/png"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_tile_map_draws_the_tiles_of_the_style_it_is_given(
    schema_db: str, browser: Any, artefacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (256, 256), (170, 210, 160)).save(png, "PNG")
    _Tiles.png, _Tiles.requested = png.getvalue(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        style = f"http://127.0.0.1:{server.server_address[1]}/style.json"
        monkeypatch.setenv("SOUNDSCAPE_DASHBOARD_MAP_TILES", style)
        fleet = seed_fleet(schema_db, 3, minute_hours=1, hour_days=0)
        with dashboard(schema_db, free_port()) as url:
            drawn = draw(browser, f"{url}/?page=Overview", timeout_s=150)
            # The tiles arrive after the chart is drawn: wait for the first, then for the map
            # to settle, before the screenshot.
            deadline = time.monotonic() + 60
            while not any(p.startswith("/tiles/") for p in _Tiles.requested):
                assert time.monotonic() < deadline, f"no tile requested: {_Tiles.requested}"
                time.sleep(0.2)
            browser.wait_for_timeout(1000)
            canvases = browser.locator(".st-key-chart-map canvas").count()
            browser.screenshot(path=str(artefacts / "overview-tiles.png"), full_page=True)
    finally:
        server.shutdown()
        server.server_close()
    assert drawn.errors == []
    assert _Tiles.requested[0] == "/style.json"
    assert canvases >= 1  # MapLibre's WebGL canvas
    mapped = drawn.charts["map"]
    assert mapped.points == len(fleet.devices) + 1  # the spare too, by its latitude
    assert dict(mapped.traces).get("never seen") == 1
    assert mapped.clipped == []
