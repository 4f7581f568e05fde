"""``S3Lake``: the lake under ``s3://bucket/prefix`` on AWS or any S3 API (MinIO, moto, ...).

Built on ``pyarrow.fs.S3FileSystem``, so readers get the very same filesystem object from
``arrow_filesystem()``. Notes that shape the code:

* Atomicity: an S3 object becomes visible only when its upload completes: one PutObject
  (below 10 MiB, thanks to ``allow_delayed_open``) or CompleteMultipartUpload, which pyarrow
  sends on ``close()`` after every part succeeded. pyarrow has no abort, and closing a stream
  (even from ``__exit__`` after an exception, or its destructor) *completes* the upload, so we
  never stream a half-made file: content is fully built in memory and handed over in a
  single ``write``.
* ``open_output_stream``/``open_input_stream`` default to ``compression="detect"`` and would
  gzip a path ending in ``.gz``; we always pass ``compression=None``.
* pyarrow emulates directories: after deleting a file (or a prefix) it PUTs an empty
  ``parent/`` marker object so the parent "directory" still exists. ``list`` returns files
  only, so markers never show; ``delete_prefix`` removes the markers below the prefix too.
* The bucket must exist; writes to a missing bucket fail (``OSError`` naming the bucket).
  ``create_bucket()`` is for tests and demos; production buckets are made by ops.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from homefeed.config import S3Config
from homefeed.lake.base import FileInfo, LakeStore, check_path, check_prefix, not_found


def s3_filesystem(config: S3Config, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for ``config``: its endpoint (or AWS), region and credentials.

    Credentials come from the config when both keys are set, otherwise from the standard AWS
    chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance metadata).
    """
    if (config.access_key_id is None) != (config.secret_access_key is None):
        raise ValueError(
            "lake.s3: set both access_key_id and secret_access_key, or neither (to use the "
            "AWS environment)"
        )
    scheme, endpoint = _split_endpoint(config.endpoint_url)
    return pafs.S3FileSystem(
        access_key=config.access_key_id,
        secret_key=config.secret_access_key,
        region=config.region,
        scheme=scheme,
        endpoint_override=endpoint,
        # Small objects in one PutObject at close instead of a multipart upload started on
        # open: fewer requests, and errors (no bucket, no access) still surface at close.
        allow_delayed_open=True,
        allow_bucket_creation=allow_bucket_creation,
    )


def _split_endpoint(endpoint_url: str | None) -> tuple[str, str | None]:
    """``http://127.0.0.1:9000`` -> ``("http", "127.0.0.1:9000")``; None -> AWS over https."""
    if endpoint_url is None:
        return "https", None
    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(
            f"lake.s3.endpoint_url = {endpoint_url!r}: expected http(s)://host[:port] with no path"
        )
    return parts.scheme, parts.netloc


class S3Lake(LakeStore):
    """A lake under ``s3://bucket/prefix`` (``prefix`` may be empty: the whole bucket)."""

    def __init__(self, bucket: str, prefix: str, config: S3Config) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"S3 bucket name {bucket!r} must be non-empty and contain no '/'")
        self.bucket = bucket
        self.prefix = check_prefix(prefix.strip("/"))
        self.config = config
        self._fs = s3_filesystem(config)
        self._base = f"{bucket}/{self.prefix}" if self.prefix else bucket

    @property
    def uri(self) -> str:
        return f"s3://{self._base}"

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (tests and demos; ops make real ones)."""
        s3_filesystem(self.config, allow_bucket_creation=True).create_dir(self.bucket)

    def _full(self, path: str) -> str:
        return f"{self._base}/{check_path(path)}"

    def _full_prefix(self, prefix: str) -> str:
        prefix = check_prefix(prefix)
        return f"{self._base}/{prefix}" if prefix else self._base

    def put_bytes(self, path: str, data: bytes) -> None:
        full = self._full(path)
        # One write of the complete content: see the module docstring on why never more.
        with self._fs.open_output_stream(full, compression=None) as stream:
            stream.write(data)

    def get_bytes(self, path: str) -> bytes:
        full = self._full(path)
        try:
            with self._fs.open_input_stream(full, compression=None) as stream:
                data: bytes = stream.read()
        except FileNotFoundError:
            raise not_found(f"s3://{full}") from None
        return data

    def exists(self, path: str) -> bool:
        info = self._fs.get_file_info(self._full(path))
        return bool(info.type == pafs.FileType.File)

    def list(self, prefix: str = "") -> list[FileInfo]:
        top = self._full_prefix(prefix)
        # A selector names a directory: S3 lists keys starting "top/", so a/bc never matches a/b.
        selector = pafs.FileSelector(top, recursive=True, allow_not_found=True)
        cut = len(self._base) + 1
        found = [
            FileInfo(info.path[cut:], int(info.size))
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]
        return sorted(found, key=lambda f: f.path)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.delete_file(self._full(path))

    def delete_prefix(self, prefix: str) -> int:
        top = self._full_prefix(prefix)
        count = len(self.list(prefix))
        if top == self.bucket:  # delete_dir would try to delete the bucket itself
            self._fs.delete_dir_contents(top, missing_dir_ok=True)
            return count
        with contextlib.suppress(FileNotFoundError):  # nothing below the prefix
            self._fs.delete_dir(top)  # also removes directory markers below and at top
        return count

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self._fs, self._base
