"""The fleet simulator's pure core: ids, staggered sample clocks, scene slices, due order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.simulate.core import SCENE_STEP, Fleet, Scene, device_ids, origin_for

RATE = 8000
T0 = 1_764_399_960.0


def ramp_scene(frames: int) -> Scene:
    return Scene(np.arange(frames, dtype="<i2").tobytes(), RATE)


def test_device_ids_are_numbered_and_padded() -> None:
    assert device_ids(3) == ["sim-0001", "sim-0002", "sim-0003"]
    assert device_ids(2, "lab") == ["lab-0001", "lab-0002"]
    assert device_ids(12_345)[-1] == "sim-12345"
    assert len(set(device_ids(1000))) == 1000


def test_every_sensor_has_its_own_sequence_and_staggered_clock() -> None:
    fleet = Fleet(device_ids(3), [ramp_scene(3 * RATE)], 1.0, 5.0, origin=T0)
    assert fleet.total == 15
    dues = [fleet.due_at(i) for i in range(fleet.total)]
    assert dues == sorted(dues)
    assert dues[:4] == pytest.approx([1.0, 1 + 1 / 3, 1 + 2 / 3, 2.0])
    chunks = fleet.take_due(math.inf)
    assert fleet.done and fleet.next_due() == math.inf and fleet.take_due(math.inf) == []
    for i, device in enumerate(device_ids(3)):
        mine = [c for c in chunks if c.device == device]
        assert [c.seq for c in mine] == [0, 1, 2, 3, 4]
        assert [c.start for c in mine] == pytest.approx([T0 + i / 3 + k for k in range(5)])
        assert all(c.rate == RATE and c.seconds == 1.0 and c.channels == 1 for c in mine)


def test_chunks_fall_due_in_time_not_before() -> None:
    fleet = Fleet(device_ids(4), [ramp_scene(RATE)], 1.0, 3.0, origin=T0)
    assert fleet.take_due(0.99) == []
    assert [c.device for c in fleet.take_due(1.0)] == ["sim-0001"]
    assert [c.device for c in fleet.take_due(1.6)] == ["sim-0002", "sim-0003"]
    assert fleet.next_due() == pytest.approx(1.75)


def test_without_stagger_every_sensor_is_due_at_once() -> None:
    fleet = Fleet(device_ids(5), [ramp_scene(RATE)], 1.0, 2.0, origin=T0, stagger=False)
    assert len(fleet.take_due(1.0)) == 5
    assert {c.start for c in fleet.take_due(2.0)} == {T0 + 1}


def test_chunks_are_slices_of_the_scene_at_each_sensors_own_offset() -> None:
    frames = RATE // 2 + 123  # shorter than a chunk: slices wrap around the scene
    scene = ramp_scene(frames)
    fleet = Fleet(device_ids(2), [scene], 1.0, 3.0, origin=T0)
    chunks = fleet.take_due(math.inf)
    ramp = np.arange(frames, dtype=np.int64)
    for i in range(2):
        mine = [c for c in chunks if c.device == f"sim-000{i + 1}"]
        got = np.concatenate([np.frombuffer(c.pcm, "<i2") for c in mine])
        first = (i * SCENE_STEP) % frames
        expected = ramp[(first + np.arange(3 * RATE)) % frames]
        assert np.array_equal(got, expected)


def test_sensors_share_scenes_in_turn() -> None:
    quiet, loud = Scene(b"\x01\x00" * RATE, RATE), Scene(b"\x00\x40" * RATE, RATE)
    fleet = Fleet(device_ids(4), [quiet, loud], 1.0, 1.0, origin=T0)
    pcm = {c.device: c.pcm for c in fleet.take_due(math.inf)}
    assert pcm["sim-0001"] == pcm["sim-0003"] == quiet.pcm
    assert pcm["sim-0002"] == pcm["sim-0004"] == loud.pcm


def test_a_fleet_needs_devices_scenes_and_one_rate() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Fleet([], [ramp_scene(RATE)])
    with pytest.raises(ValueError, match="empty"):
        Fleet(["a"], [Scene(b"", RATE)])
    with pytest.raises(ValueError, match="several rates"):
        Fleet(["a"], [ramp_scene(RATE), Scene(b"\x00\x00" * 100, 16000)])


def test_faster_runs_start_in_the_past_so_no_chunk_ends_in_the_future() -> None:
    assert origin_for(1000.0, 60.0, 1.0) == 1000.0
    assert origin_for(1000.0, 60.0, 4.0) == pytest.approx(1000.0 - 45.0)
    # chunk ending at simulated s (audio time origin + s) is published at wall now + s/speed
    for s in (1.0, 30.0, 60.0):
        assert origin_for(1000.0, 60.0, 4.0) + s <= 1000.0 + s / 4.0 + 1e-9


def test_scene_from_float_clips_to_16_bits() -> None:
    scene = Scene.from_float(np.array([0.0, 0.5, -2.0, 2.0]), RATE)
    assert np.frombuffer(scene.pcm, "<i2").tolist() == [0, 16384, -32768, 32767]
    assert scene.frames == 4
