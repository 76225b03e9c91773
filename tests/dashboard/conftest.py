"""Fixtures of the dashboard tests: a database with the results schema, empty or populated."""

from __future__ import annotations

import pytest

from tests.dashboard.data import Dataset, apply_schema, populate


@pytest.fixture
def schema_db(database: str) -> str:
    """A fresh database with the results tables and no rows; its DSN."""
    apply_schema(database)
    return database


@pytest.fixture
def populated(schema_db: str) -> tuple[str, Dataset]:
    """(DSN, reference times) of a database holding the known data set of `data.populate`."""
    return schema_db, populate(schema_db)
