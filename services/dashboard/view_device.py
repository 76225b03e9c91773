"""The device page: one sensor in detail."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import streamlit as st

from services.dashboard import core, figures, queries, queries_device
from services.dashboard.ui import Page, chart, section, table

#: Classes in the hour x class heat map and in the LAeq-per-class chart.
HEATMAP_CLASSES: Final = 12
LEVEL_CLASSES: Final = 10
#: Most columns of the spectrogram.
SPECTROGRAM_COLUMNS: Final = 240
MINUTE: Final = timedelta(minutes=1)


def pick_device(page: Page) -> str | None:
    """The device shown: the sidebar's choice, which starts at the URL's `device`."""
    reported = page.known
    if not reported:
        return None
    wanted = st.query_params.get("device")
    index = reported.index(wanted) if wanted in reported else 0
    device = st.sidebar.selectbox("Device", reported, index=index, key="device")
    if device is not None and st.query_params.get("device") != device:
        st.query_params["device"] = device
    return device


def indices_bucket(span: timedelta) -> timedelta:
    """Days beyond three days, hours beyond six hours, else five minutes."""
    if span > timedelta(days=3):
        return timedelta(days=1)
    if span > core.ROLLUP_AFTER:
        return timedelta(hours=1)
    return timedelta(minutes=5)


def show(page: Page) -> None:
    """Level timeline, hour x class, spectrogram, indices, LAeq per class, noise events."""
    device = pick_device(page)
    if device is None:
        st.info("No device yet.")
        return
    name = page.query(queries.device_overview, [device])["name"].iloc[0]
    st.header(f"Device {device}" + (f": {name}" if isinstance(name, str) and name else ""))
    span, tz = page.span, page.tz
    colour = page.colours.get(device, "#1f77b4")
    bucket = max(page.bucket, MINUTE)
    with section("Sound level"):
        levels = page.query(queries.level_series, [device], span.start, span.end, bucket)
        summaries = page.query(queries.summary_series, [device], span.start, span.end, bucket)
        fig = figures.level_timeline(levels, summaries, colour, bucket, span.start, span.end, tz)
        data = levels.merge(
            summaries.drop(columns=["device"], errors="ignore"), on="bucket", how="outer",
            suffixes=("", "_summary"),
        )  # fmt: skip
        chart("levels", fig, data)
    with section("Detections by hour"):
        counts = page.query(
            queries_device.hour_class_counts, device, span.start, span.end, tz, HEATMAP_CLASSES
        )
        chart("hour-class", figures.hour_class_heatmap(counts, tz), counts)
    with section("Band levels"):
        bands_bucket = max(core.bucket_for(span.span, SPECTROGRAM_COLUMNS), MINUTE)
        table_name, how = queries_device.band_source(page.conn, span.span, bands_bucket)
        start, note = span.start, ""
        if how == "raw" and span.span > queries_device.RAW_BANDS_MAX:
            start = span.end - queries_device.RAW_BANDS_MAX
            bands_bucket = max(
                core.bucket_for(queries_device.RAW_BANDS_MAX, SPECTROGRAM_COLUMNS), MINUTE
            )
            note = f" (last {core.describe_bucket(queries_device.RAW_BANDS_MAX)} of the range)"
        bands = page.query(
            queries_device.band_levels, device, start, span.end, bands_bucket, table_name
        )
        chart(
            "spectrogram",
            figures.spectrogram(bands, bands_bucket, start, span.end, tz, note),
            bands,
        )
    if "indices" in page.tables:
        with section("Acoustic indices"):
            ib = indices_bucket(span.span)
            indices = page.query(queries.indices_series, [device], span.start, span.end, ib)
            chart(
                "indices",
                figures.indices_figure(indices, colour, ib, span.start, span.end, tz),
                indices,
            )
    with section("What makes the noise"):
        by_class = page.query(
            queries_device.class_levels, device, span.start, span.end, page.min_score,
            LEVEL_CLASSES,
        )  # fmt: skip
        note = ""
        if span.span > queries_device.CLASS_LEVELS_MAX:
            note = f" (last {core.describe_bucket(queries_device.CLASS_LEVELS_MAX)})"
        chart("class-levels", figures.class_levels_figure(by_class, note), by_class)
    if "noise_events" in page.tables:
        with section("Noise events"):
            st.subheader("Noise events")
            events = page.query(
                queries.noise_events, [device], span.start, span.end, page.settings.events_limit
            )
            if events.empty:
                st.info("No noise events in this range.")
            else:
                events = events.assign(classes=[core.format_classes(c) for c in events["classes"]])
                table("device-events", events)
