"""Lake fixtures: every store behind one ``lake`` fixture (servers come from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homefeed.lake.base import LakeStore
from tests.conftest import LAKE_BACKENDS, make_lake


@pytest.fixture(params=LAKE_BACKENDS)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeStore:
    return make_lake(request, tmp_path, request.param)
