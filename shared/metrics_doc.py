"""Render docs/metrics.md from `shared.metrics.FAMILIES` (`python -m shared.metrics_doc`).

tests/test_metrics.py keeps the page and the code in step, and checks that every family a
running service exposes is declared there, so the list cannot drift.
"""

from __future__ import annotations

from shared.metrics import FAMILIES, Family

INTRO = """# Metrics

Every service serves Prometheus metrics on `http://HOST:PORT/metrics` when
`SOUNDSCAPE_METRICS_PORT` is set (off when unset or empty; `SOUNDSCAPE_METRICS_HOST` is the
address, default all). Each service has its own endpoint: scrape each as its own target (the
`soundscape_service_info` gauge names the service and node). In Compose every container can
use the same port on the internal network; nothing is published on the host. Generated from
`shared/metrics.py` by `python -m shared.metrics_doc > docs/metrics.md`.

The status counters are the ones each service already carries in its retained status (see
the service pages): `soundscape_status_counter_total{name="chunks"}` is the status counter
`chunks`, read from the same function when Prometheus scrapes, so the two never disagree.
Beside these, prometheus-client's standard `process_*` metrics (CPU seconds, resident
memory, open file descriptors, start time) describe each service's process.
"""


def exposed(family: Family) -> str:
    """The sample names Prometheus sees for `family`."""
    if family.kind == "counter":
        return f"`{family.name}_total`"
    if family.kind == "histogram":
        return f"`{family.name}_bucket`, `_sum`, `_count`"
    return f"`{family.name}`"


def render() -> str:
    """The whole page."""
    rows = [
        INTRO,
        "| metric | type | labels | services | meaning |",
        "|---|---|---|---|---|",
    ]
    for family in FAMILIES.values():
        labels = ", ".join(f"`{label}`" for label in family.labels) or "-"
        rows.append(
            f"| {exposed(family)} | {family.kind} | {labels} | {family.services} | {family.help} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
