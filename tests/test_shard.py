"""Device-affine shards: stable, balanced, and together every device exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.shard import Shard, device_hash, device_level, shard_of

DEVICES = [f"sim-{i:04d}" for i in range(1, 2001)]


def test_the_owner_is_stable_across_processes_and_runs() -> None:
    # Fixed values (BLAKE2b-64 of the UTF-8 id): neither salted per process like Python's
    # hash() nor dependent on the machine, so every worker and every restart agrees.
    assert hex(device_hash("yor")) == "0x1bda44e9bde0713c"
    assert [shard_of(d, 4) for d in ("yor", "sim-0001", "sim-0002", "b827eb123456")] == [
        0,
        1,
        0,
        2,
    ]
    assert "".join(str(shard_of(f"sim-{i:04d}", 2)) for i in range(1, 17)) == "1010011000001011"
    assert shard_of("yor", 1) == 0


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_shards_are_balanced_and_cover_every_device_once(k: int) -> None:
    shards = [Shard(i, k) for i in range(k)]
    owners = {d: [s.index for s in shards if s.owns(d)] for d in DEVICES}
    assert all(len(o) == 1 for o in owners.values())  # disjoint, and a cover
    sizes = Counter(o[0] for o in owners.values())
    assert set(sizes) == set(range(k))
    expected = len(DEVICES) / k
    assert all(abs(n - expected) < 0.15 * expected for n in sizes.values()), sizes


def test_the_topic_decides_before_the_payload_is_read() -> None:
    prefix = "city/soundscape"
    shard = Shard(shard_of("yor", 2), 2)
    other = Shard(1 - shard.index, 2)
    topic = f"{prefix}/yor/audio"
    assert device_level(topic, prefix) == "yor"
    assert shard.owns_topic(topic, prefix) and not other.owns_topic(topic, prefix)
    # Not a device topic: kept, so the message class rejects and counts it.
    for odd in (f"{prefix}/audio", "elsewhere/yor/audio", f"{prefix}/a/b/audio", f"{prefix}//x"):
        assert device_level(odd, prefix) is None
        assert other.owns_topic(odd, prefix) and shard.owns_topic(odd, prefix)
    assert Shard().whole and Shard().owns("anything")


@pytest.mark.parametrize(("index", "count"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_outside_its_count_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)
