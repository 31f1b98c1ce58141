"""Where media files live: one small interface over fsspec (local folder or any S3 bucket).

``MEDIA_STORAGE_URL`` names the root: ``file:///srv/media`` (or a plain path), or
``s3://bucket/prefix`` through s3fs with ``MEDIA_S3_ENDPOINT_URL`` (MinIO, R2, Ceph, moto…),
``MEDIA_S3_ACCESS_KEY_ID``/``MEDIA_S3_SECRET_ACCESS_KEY`` (else the usual AWS credential
chain) and ``MEDIA_S3_REGION``. Unset: ``WA_DATA_DIR/media`` on local disk (the embedded
default). Writes stream: S3 uploads go as multipart parts of :data:`S3_PART_BYTES`, so a
100 MB file never sits in memory (``docs/benchmarks.md``, "Media download").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import IO, Any

import fsspec

log = logging.getLogger("wa_core.media")

#: S3 multipart part size (S3's minimum): what one upload buffers at most
S3_PART_BYTES = 5 * 1024 * 1024


class MediaStorage:
    """Files under one root URL. Keys are relative paths (``<org>/<phone>/<media id>``) built
    by the caller from checked ids; they are never taken from a request."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    @classmethod
    def from_settings(cls, settings: Any) -> MediaStorage:
        """The storage of :class:`wa_core.settings.Settings` (``MEDIA_STORAGE_URL`` and the
        ``MEDIA_S3_*`` settings; default ``WA_DATA_DIR/media``)."""
        url = settings.media_storage_url or str((settings.data_dir / "media").resolve())
        if url.startswith("s3://"):
            options: dict[str, Any] = {}
            if settings.media_s3_endpoint_url:
                options["endpoint_url"] = settings.media_s3_endpoint_url
            if settings.media_s3_access_key_id:
                options["key"] = settings.media_s3_access_key_id.get_secret_value()
            if settings.media_s3_secret_access_key:
                options["secret"] = settings.media_s3_secret_access_key.get_secret_value()
            if settings.media_s3_region:
                options["client_kwargs"] = {"region_name": settings.media_s3_region}
            return cls(url, **options)
        return cls(url, auto_mkdir=True)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` under the root."""
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError("storage keys are relative paths without '..'")
        return f"{self.root}/{key}"

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file to stream ``key`` into; on an exception the partial file is removed
        (best effort) and the exception propagates."""
        path = self.path(key)
        kwargs = {} if self.is_local else {"block_size": S3_PART_BYTES}
        handle = self.fs.open(path, "wb", **kwargs)
        try:
            yield handle
        except BaseException:
            with contextlib.suppress(Exception):
                if hasattr(handle, "discard") and not self.is_local:
                    handle.discard()  # abort the multipart upload: nothing becomes visible
                handle.close()
            self.delete(key)
            raise
        handle.close()

    def open(self, key: str) -> IO[bytes]:
        """``key`` opened for reading (``FileNotFoundError`` when missing)."""
        return self.fs.open(self.path(key), "rb")

    def size(self, key: str) -> int:
        """Size of ``key`` in bytes."""
        return int(self.fs.size(self.path(key)))

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (errors are logged, never raised)."""
        try:
            if self.fs.exists(self.path(key)):
                self.fs.rm(self.path(key))
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
            log.warning("media storage: could not remove a partial file (%s)", type(exc).__name__)

    def __repr__(self) -> str:
        return f"MediaStorage({self.url!r})"


__all__ = ["MediaStorage", "S3_PART_BYTES"]
