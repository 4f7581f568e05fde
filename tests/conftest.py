"""Fixtures shared by several suites: real servers start once per session, never skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from homefeed.lake.base import LakeStore
from homefeed.lake.local import LocalLake
from homefeed.lake.s3 import S3Lake
from homefeed.testing.s3 import MotoS3Server

LAKE_BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.s3)]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """One S3 API server process for the session; tests keep apart by bucket or prefix."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_bucket(moto_s3: MotoS3Server) -> str:
    bucket = f"homefeed-lake-{uuid.uuid4().hex[:8]}"
    S3Lake(bucket, "", moto_s3.s3_config()).create_bucket()
    return bucket


def make_lake(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> LakeStore:
    """A fresh, empty lake on ``backend``: a temp directory, or a new prefix in the S3 bucket."""
    if backend == "local":
        return LocalLake(tmp_path / "lake")
    server: MotoS3Server = request.getfixturevalue("moto_s3")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3Lake(bucket, f"tests/{uuid.uuid4().hex[:12]}", server.s3_config())
