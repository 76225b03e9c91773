"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.compose_runner import work_folder


@pytest.fixture
def base() -> Iterator[Path]:
    """A work folder Mosquitto's own user can read (compose_runner.work_folder)."""
    with work_folder() as folder:
        yield folder
