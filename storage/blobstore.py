"""Blob stores: one protocol, two real implementations (S3 through boto3, a local directory).

Keys are always store-relative POSIX strings. A key never becomes a local path on its own: the local store
resolves it under its root and refuses anything that escapes, and downloads go to caller-chosen file names."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from schemas.errors import InputError, SourceError, TransientError
from schemas.records import BlobInfo, StageError

CHUNK = 1024 * 1024


@runtime_checkable
class BlobStore(Protocol):
    uri: str
    """The store's identity, recorded with every object: s3://bucket or file:///abs/dir."""

    prefix: str
    """Key prefix this store was opened with ('' for the whole store)."""

    warnings: list[str]
    """Problems met while listing that belong to no object (e.g. a folder that cannot be read)."""

    def list(self, prefix: str = "") -> Iterator[BlobInfo]: ...

    def download(self, key: str, dest: Path, max_bytes: int) -> str:
        """Stream the object into `dest` and return its sha256. Raises InputError past `max_bytes`."""
        ...

    def read_head(self, key: str, n: int = 4096) -> bytes: ...

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        """Store a local file under `key`; return the object's URI."""
        ...

    def uri_for(self, key: str) -> str: ...


def too_large(size: int, max_bytes: int) -> InputError:
    """The limit is set in MiB (DOCFLOW_MAX_FILE_MB = 512 means 512 x 1024 x 1024 bytes) and reported in MiB."""
    return InputError(
        "download",
        "too_large",
        f"file too large: {size / 2**20:.1f} MiB exceeds the {max_bytes / 2**20:.1f} MiB limit (DOCFLOW_MAX_FILE_MB)",
    )


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes, read a block at a time: what a download returns, the embedding cache's key,
    the check of a model assembled from parts."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _copy_capped(src: Any, dest: Path, max_bytes: int) -> None:
    written = 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise too_large(written, max_bytes)
            out.write(chunk)


_FILE_TYPES = {
    stat.S_IFIFO: "named pipe",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFDIR: "directory",
}


def _file_type(mode: int) -> str:
    return _FILE_TYPES.get(stat.S_IFMT(mode), "special file")


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return prefix.rstrip("/") + "/" + key.lstrip("/")


class LocalDirStore:
    """A directory on local disk, addressed like a bucket."""

    def __init__(self, root: str | Path, prefix: str = "") -> None:
        self.root = Path(root).expanduser().resolve()
        self.prefix = prefix.strip("/")
        self.uri = self.root.as_uri()
        self.warnings: list[str] = []

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InputError("download", "unsafe_key", f"object key escapes the store root: {key!r}")
        return path

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every entry under the prefix. An entry that is not a readable regular file (a FIFO, a broken or looping
        symlink) is listed with its `problem`, so it is recorded as failed without being opened; a folder that
        cannot be read becomes a warning in `self.warnings`."""
        start = self.root / _join(self.prefix, prefix) if (self.prefix or prefix) else self.root
        if not self.root.is_dir():
            raise SourceError(f"source directory does not exist: {self.root}")

        def unreadable(exc: OSError) -> None:
            where = Path(exc.filename).relative_to(self.root).as_posix() if exc.filename else "?"
            self.warnings.append(f"cannot read folder {where or '.'}: {exc.strerror or exc}")

        for dirpath, dirnames, filenames in os.walk(start, onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    blob = self._entry(Path(dirpath) / name)
                    if blob is not None:
                        yield blob

    def _entry(self, path: Path) -> BlobInfo | None:
        key = path.relative_to(self.root).as_posix()
        try:
            link = path.lstat()
        except OSError as exc:  # vanished between listing and stat, or no permission on the folder
            return self._problem(key, None, "unreadable", f"cannot read file metadata: {exc.strerror or exc}")
        if stat.S_ISLNK(link.st_mode):
            try:
                target = path.resolve(strict=True)
            except RuntimeError:  # Python 3.11 reports a loop this way
                return self._problem(key, link, "symlink_loop", "symbolic link loop: the link points back to itself")
            except OSError as exc:
                return self._problem(
                    key, link, "broken_symlink", f"broken symbolic link: its target is missing ({exc.strerror or exc})"
                )
            if not target.is_relative_to(self.root):
                self.warnings.append(f"skipped {key}: the link points outside the source folder")
                return None
        try:
            info = path.stat()
        except OSError as exc:
            return self._problem(key, link, "unreadable", f"cannot read file metadata: {exc.strerror or exc}")
        if not stat.S_ISREG(info.st_mode):
            return self._problem(key, info, "not_regular_file", f"not a regular file ({_file_type(info.st_mode)})")
        return self._blob(key, info)

    def _blob(self, key: str, info: os.stat_result | None, problem: StageError | None = None) -> BlobInfo:
        size, mtime_ns = (info.st_size, info.st_mtime_ns) if info else (0, 0)
        return BlobInfo(
            source=self.uri,
            key=key,
            version=f"{size}-{mtime_ns}",
            size=size,
            last_modified=datetime.fromtimestamp(mtime_ns / 1e9, UTC),
            problem=problem,
        )

    def _problem(self, key: str, info: os.stat_result | None, code: str, message: str) -> BlobInfo:
        return self._blob(key, info, StageError(stage="discover", code=code, message=message))

    def download(self, key: str, dest: Path, max_bytes: int) -> str:
        path = self._path(key)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; the fstat below then refuses it.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise InputError("download", "gone", f"object disappeared before it could be read: {key}") from None
        except PermissionError:
            raise InputError("download", "access_denied", f"access denied reading {key}: permission denied") from None
        with os.fdopen(fd, "rb") as src:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError("download", "not_regular_file", f"not a regular file ({_file_type(info.st_mode)})")
            os.set_blocking(fd, True)
            if info.st_size > max_bytes:
                raise too_large(info.st_size, max_bytes)
            _copy_capped(src, dest, max_bytes)
        return file_sha256(dest)

    def read_head(self, key: str, n: int = 4096) -> bytes:
        path = self._path(key)
        if not path.is_file():
            return b""  # not a regular file: discovery records it as failed, nothing to sniff
        with open(path, "rb") as src:
            return src.read(n)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        target = self._path(_join(self.prefix, key))
        staging = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, staging)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(path, staging)
            os.replace(staging, target)  # atomic: readers never see a half-written file
        except OSError as exc:  # a full disk or an unwritable folder is the store's fault, not the input's
            with contextlib.suppress(OSError):
                staging.unlink(missing_ok=True)
            raise TransientError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return target.as_uri()

    def uri_for(self, key: str) -> str:
        return self._path(_join(self.prefix, key)).as_uri()


def is_transient_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout", "InternalError"}
    return isinstance(exc, BotoCoreError | ConnectionError | TimeoutError)


class S3Store:
    """An S3 bucket (and optional prefix) through boto3's standard credential and endpoint chain."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, page_size: int = 1000) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}"
        self.page_size = page_size
        self.warnings: list[str] = []
        self._client = client or make_s3_client()

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise InputError("download", "gone", f"object disappeared before it could be read: {key}") from exc
            if code in {"AccessDenied", "403"}:
                raise InputError(
                    "download", "access_denied", f"access denied reading s3://{self.bucket}/{key}"
                ) from exc
            if is_transient_error(exc):
                raise TransientError(f"S3 {what} failed for {key or self.bucket}: {exc}") from exc
            raise
        except Exception as exc:
            if is_transient_error(exc):
                raise TransientError(f"S3 {what} failed for {key or self.bucket}: {exc}") from exc
            raise

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        full_prefix = _join(self.prefix, prefix)
        pages = self._call(
            "list",
            full_prefix,
            paginator.paginate,
            Bucket=self.bucket,
            Prefix=full_prefix,
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue  # "folder" placeholder objects
                    yield BlobInfo(
                        source=self.uri,
                        key=item["Key"],
                        version=item.get("ETag", "").strip('"') or str(item["LastModified"].timestamp()),
                        size=item["Size"],
                        last_modified=item["LastModified"].astimezone(UTC),
                    )
        except Exception as exc:
            from botocore.exceptions import NoCredentialsError

            if isinstance(exc, NoCredentialsError):
                raise SourceError(
                    f"cannot list s3://{self.bucket}/{full_prefix}: no AWS credentials found (set AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                ) from exc
            if is_transient_error(exc):
                raise TransientError(f"S3 list failed for s3://{self.bucket}/{full_prefix}: {exc}") from exc
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise SourceError(f"bucket does not exist: s3://{self.bucket}") from exc
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                raise SourceError(
                    f"cannot list s3://{self.bucket}/{full_prefix}: {code} (check AWS credentials)"
                ) from exc
            raise

    def download(self, key: str, dest: Path, max_bytes: int) -> str:
        response = self._call("get", key, self._client.get_object, Bucket=self.bucket, Key=key)
        size = response.get("ContentLength", 0)
        body = response["Body"]
        try:
            if size > max_bytes:
                raise too_large(size, max_bytes)
            _copy_capped(body, dest, max_bytes)
        except InputError:
            raise
        except Exception as exc:
            raise TransientError(f"S3 download of {key} broke off: {exc}") from exc
        finally:
            body.close()
        return file_sha256(dest)

    def read_head(self, key: str, n: int = 4096) -> bytes:
        response = self._call(
            "get", key, self._client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes=0-{n - 1}"
        )
        with response["Body"] as body:
            return body.read()

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        full_key = _join(self.prefix, key)
        extra = {"ContentType": content_type} if content_type else None
        try:
            self._client.upload_file(Filename=str(path), Bucket=self.bucket, Key=full_key, ExtraArgs=extra)
        except Exception as exc:  # boto3 wraps every cause in S3UploadFailedError; none is the input's fault
            raise TransientError(f"cannot write s3://{self.bucket}/{full_key}: {exc}") from exc
        return f"s3://{self.bucket}/{full_key}"

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{_join(self.prefix, key)}"


def make_s3_client() -> Any:
    """boto3 client from the standard chain (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, profiles, instance roles)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    return session.client(
        "s3",
        region_name=session.region_name or "us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def open_store(location: str) -> BlobStore:
    """s3://bucket/prefix -> S3Store; file:///dir or a plain path -> LocalDirStore."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        return LocalDirStore(parsed.path)
    return LocalDirStore(location)


def safe_suffix(key: str) -> str:
    """A short, harmless file suffix taken from a key (used only for temp-file names)."""
    suffix = PurePosixPath(key).suffix.lower()
    return suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ""
