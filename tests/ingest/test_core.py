"""The pure decisions of ingest: rows, keys, validation, gaps, sync interval, roles SQL."""

from __future__ import annotations

import json
import math
import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.core import (
    DEFAULT_SYNC_INTERVAL,
    Gap,
    Rejection,
    Result,
    Triage,
    gaps_of,
    result_key,
    row_problem,
    rows_of,
    sync_interval,
)
from services.ingest.schema import TABLES, roles_sql
from shared.devices import Device, DeviceRegistry
from shared.messages import JSON, RESULT_TYPES, Calibration, LabelScore, LabelsResult, LevelsResult
from tests.ingest.helpers import NOW, T0, every_kind, labels, level

PREFIX = "p"


def verdict(msg: object, triage: Triage | None = None, now: float = NOW) -> Result | Rejection:
    assert hasattr(msg, "topic")
    t = triage or Triage(PREFIX)
    return t.message(msg.topic(PREFIX), msg.encode(), None, now)  # type: ignore[attr-defined]


def test_every_result_kind_has_a_table_whose_key_is_among_its_columns() -> None:
    assert set(TABLES) == set(RESULT_TYPES)
    for table in TABLES.values():
        assert set(table.key) <= set(table.names)
        # a window result is keyed by its window; a reported gap by the uid derived from it
        assert {"device", "window_start"} <= set(table.key) or table.key == ("uid",)
        # rollups read the staged rows of the inserted keys
        assert all(name and sql.startswith("INSERT INTO ") for name, sql in table.rollups)


@pytest.mark.parametrize("msg", every_kind(7), ids=lambda m: m.LEAF)
def test_rows_match_the_table_columns_and_pass_the_boundary_check(msg: LabelsResult) -> None:
    rows = rows_of(msg)
    table = TABLES[msg.LEAF]
    assert rows
    for row in rows:
        assert len(row) == len(table.columns)
        assert row_problem(msg.LEAF, row) is None
        values = dict(zip(table.names, row, strict=True))
        assert values["device"] == "yor"
        assert values["window_start"] == T0 + 7
        assert values["window_seq"] == 7


def test_labels_become_one_row_per_label_ranked_highest_first() -> None:
    rows = rows_of(labels(3, k=3))
    names = TABLES["labels"].names
    got = [dict(zip(names, r, strict=True)) for r in rows]
    assert [g["label"] for g in got] == ["Speech", "Hum", "Bird"]
    assert [g["rank"] for g in got] == [1, 2, 3]
    assert got[0]["rating"] == pytest.approx(0.9)
    assert {g["model"] for g in got} == {"tiny-ast"}


def test_levels_row_carries_the_calibration_and_bands_as_json() -> None:
    (row,) = rows_of(level(1))
    values = dict(zip(TABLES["levels"].names, row, strict=True))
    assert json.loads(values["bands"]) == {"1000": 40.0, "2000": 38.5}
    assert (values["gain_db"], values["sensitivity_dbv"], values["vadc"]) == (25.0, -18.0, 1.25)
    assert values["uncalibrated"] is True


def test_key_names_the_window_and_survives_redelivery() -> None:
    a, b = level(1), level(1)
    assert result_key(a) == result_key(b)
    assert result_key(level(1)) != result_key(level(2))
    assert result_key(level(1, "a")) != result_key(level(1, "b"))
    other_model = labels(1).model_copy(update={"model": "other"})
    assert result_key(labels(1)) != result_key(other_model)


def test_a_good_result_is_accepted_with_its_rows() -> None:
    got = verdict(level(4))
    assert isinstance(got, Result)
    assert (got.kind, got.device, got.start) == ("levels", "yor", T0 + 4)
    assert got.rows == rows_of(level(4))


def test_json_results_are_accepted_too() -> None:
    msg = labels(2)
    got = Triage(PREFIX).message(msg.topic(PREFIX), msg.encode(JSON), JSON, NOW)
    assert isinstance(got, Result)


@pytest.mark.parametrize(
    ("topic", "payload", "ctype", "category", "reason"),
    [
        ("p/yor/levels", b"\xc1", None, "invalid", "undecodable"),
        ("p/yor/levels", msgpack.packb({"v": 1, "device": "yor"})[:-3], None, "invalid", ""),
        ("p/yor/levels", msgpack.packb([1, 2, 3]), None, "invalid", "expected a map"),
        ("p/yor/levels", b"", None, "invalid", ""),
        ("p/yor/levels", level(1).encode(), "text/plain", "invalid", "content type"),
        ("p/ouse/levels", level(1).encode(), None, "invalid", "does not match"),
        ("p/yor/audio", level(1).encode(), None, "topic", "not a result topic"),
        ("p/yor/labels", level(1).encode(), None, "invalid", "invalid labels"),
        ("p/yor/levels", b'{"v": 1, "leq_db": NaN}', JSON, "invalid", ""),
        ("p/yor/levels", msgpack.packb({"v": 99}), None, "invalid", "schema version"),
        ("other/yor/levels", level(1).encode(), None, "invalid", "not a levels topic"),
    ],
)
def test_hostile_or_malformed_payloads_are_rejected_with_a_reason(
    topic: str, payload: bytes, ctype: str | None, category: str, reason: str
) -> None:
    got = Triage(PREFIX).message(topic, payload, ctype, NOW)
    assert isinstance(got, Rejection)
    assert got.category == category
    assert reason in got.reason
    assert got.counter == f"rejected_{category}"


def test_a_nul_byte_in_a_label_is_rejected_by_the_message_and_by_the_row_check() -> None:
    bad = msgpack.packb(
        {**labels(1).model_dump(), "labels": [{"label": "Hum\x00", "score": 0.5}]},
        use_bin_type=True,
    )
    got = Triage(PREFIX).message("p/yor/labels", bad, None, NOW)
    assert isinstance(got, Rejection) and "NUL" in got.reason
    # Built around validation (model_construct): the database boundary check still catches it.
    sneaky = labels(1).model_copy(
        update={"labels": [LabelScore.model_construct(label="Hum\x00", score=0.5)]}
    )
    got = Triage(PREFIX).result("p/yor/labels", sneaky, NOW)
    assert isinstance(got, Rejection) and got.category == "value"
    assert "NUL" in got.reason


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"leq_db": math.nan}, "NaN"),
        ({"laeq_db": math.inf}, "NaN or infinite"),
        ({"bands": {"1000": math.nan}}, "not JSON compliant"),
        ({"bands": {"10\x0000": 40.0}}, "NUL"),
        ({"seq": 2**64}, "integer out of range"),
    ],
)
def test_values_postgresql_would_refuse_or_mis_store_are_rejected(
    update: dict[str, object], reason: str
) -> None:
    bad = level(1).model_copy(update=update)
    got = Triage(PREFIX).result("p/yor/levels", bad, NOW)
    assert isinstance(got, Rejection), got
    assert reason in got.reason


def test_a_number_too_large_for_a_real_column_is_rejected() -> None:
    bad = labels(1).model_copy(update={"inference_ms": 1e39})
    got = Triage(PREFIX).result("p/yor/labels", bad, NOW)
    assert isinstance(got, Rejection) and "too large" in got.reason


def test_a_window_far_in_the_future_is_rejected_a_little_ahead_is_not() -> None:
    triage = Triage(PREFIX, max_future_s=3600)
    assert isinstance(verdict(level(0), triage, now=T0 - 3000), Result)
    got = verdict(level(0), triage, now=T0 - 7200)
    assert isinstance(got, Rejection) and got.category == "future"


def test_unknown_devices_are_rejected_only_when_asked_and_a_registry_exists() -> None:
    registry = DeviceRegistry(devices={"yor": Device(id="yor")})
    strict = Triage(PREFIX, registry, require_known_device=True)
    assert isinstance(verdict(level(1, "yor"), strict), Result)
    got = verdict(level(1, "ouse"), strict)
    assert isinstance(got, Rejection) and got.category == "unknown_device"
    assert isinstance(verdict(level(1, "ouse"), Triage(PREFIX, registry)), Result)
    # Asked, but no registry configured: nothing is known, so nothing can be required.
    assert isinstance(verdict(level(1, "ouse"), Triage(PREFIX, require_known_device=True)), Result)


def test_ingest_for_one_device_rejects_the_others() -> None:
    triage = Triage(PREFIX, device="yor")
    assert isinstance(verdict(level(1, "yor"), triage), Result)
    got = verdict(level(1, "ouse"), triage)
    assert isinstance(got, Rejection) and got.category == "device"


def test_row_problem_flags_a_row_of_the_wrong_shape() -> None:
    assert row_problem("levels", ("yor",)) is not None


def test_gaps_are_one_per_device_and_result_with_the_time_range() -> None:
    dropped = [("yor", "levels", T0 + s) for s in (5, 1, 9)] + [("ouse", "labels", T0)]
    assert gaps_of(dropped) == [
        Gap("ouse", "labels", T0, T0, 1),
        Gap("yor", "levels", T0 + 1, T0 + 9, 3),
    ]
    assert gaps_of([]) == []


def test_sync_interval_setting_then_registry_then_default() -> None:
    intervals = {"gsm": 3600.0}
    assert sync_interval(5.0, "gsm", intervals) == 5.0
    assert sync_interval(None, "gsm", intervals) == 3600.0
    assert sync_interval(None, "eth", intervals) == DEFAULT_SYNC_INTERVAL
    assert sync_interval(None, None, intervals) == DEFAULT_SYNC_INTERVAL


def test_roles_sql_grants_insert_and_key_columns_only_to_the_writer() -> None:
    text = roles_sql("w", "r")
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA public TO r;" in text
    assert "GRANT SELECT (device, window_start, window_duration) ON indices TO w;" in text
    # levels and labels are packed a minute a row: the writer appends to those rows
    assert "GRANT SELECT, INSERT, UPDATE ON levels_packed, labels_packed TO w;" in text
    assert not re.search(r"GRANT (UPDATE|DELETE|TRUNCATE)[^;]* ON (labels|levels|indices)\b", text)
    assert "detections" not in text  # the view: the writer may not read it
    assert "DELETE" not in text


def test_staging_sql_declares_columns_and_converts_the_window_start() -> None:
    table = TABLES["indices"]
    assert "LIKE" not in table.create_staging()
    assert "to_timestamp(s.window_start)" in table.insert()
    assert "ON CONFLICT (device, window_start, window_duration) DO NOTHING" in table.insert()
    assert "to_timestamp(st.window_start)" in TABLES["levels"].insert()


def test_calibration_defaults_are_what_the_prototype_used() -> None:
    assert Calibration() == level(0).calibration
    assert isinstance(level(0), LevelsResult)


@settings(max_examples=300, deadline=None)
@given(
    leaf=st.sampled_from([*RESULT_TYPES, "audio", "status"]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda d: msgpack.packb(d, use_bin_type=True),
            st.dictionaries(
                st.sampled_from(["v", "device", "seq", "start", "duration", "labels", "leq_db"]),
                st.one_of(
                    st.none(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5)
                ),
            ),
        ),
    ),
    ctype=st.sampled_from([None, JSON, "application/msgpack", "x/y"]),
)
def test_no_payload_makes_triage_raise(leaf: str, payload: bytes, ctype: str | None) -> None:
    got = Triage(PREFIX).message(f"p/yor/{leaf}", payload, ctype, NOW)
    assert isinstance(got, Result | Rejection)
