"""Blob stores against a real local directory and a real S3 server (SeaweedFS, auth enforced)."""

import hashlib
from pathlib import Path

import pytest

from schemas.errors import InputError, TransientError
from storage.blobstore import LocalDirStore, S3Store, open_store, safe_suffix
from tests.services import SeaweedS3


def test_local_store_lists_downloads_and_hashes(tmp_path: Path) -> None:
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.pdf").write_bytes(b"%PDF-1.4 hello")
    (root / ".hidden").write_bytes(b"x")
    store = open_store(str(root))
    (blob,) = list(store.list())
    assert (blob.key, blob.size, blob.source) == ("sub/a.pdf", 14, root.resolve().as_uri())
    sha = store.download("sub/a.pdf", tmp_path / "dl", max_bytes=100)
    assert sha == hashlib.sha256(b"%PDF-1.4 hello").hexdigest()
    with pytest.raises(InputError, match="file too large"):
        store.download("sub/a.pdf", tmp_path / "dl2", max_bytes=5)


def test_local_store_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("no")
    store = LocalDirStore(tmp_path / "inbox")
    (tmp_path / "inbox").mkdir()
    with pytest.raises(InputError, match="escapes the store root"):
        store.download("../secret", tmp_path / "x", 100)


def test_safe_suffix_never_carries_path_parts() -> None:
    assert safe_suffix("a/b/scan.JPG") == ".jpg"
    assert safe_suffix("../../etc/passwd") == ""
    assert safe_suffix("x.tar/../../y") == ""


def test_s3_auth_is_enforced(seaweed: SeaweedS3, bucket: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    anonymous = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        aws_access_key_id="wrong",
        aws_secret_access_key="wrong",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError):
        anonymous.list_objects_v2(Bucket=bucket)


def test_s3_store_paginates_and_round_trips(s3_env: SeaweedS3, bucket: str, tmp_path: Path) -> None:
    client = s3_env.client()
    for i in range(25):
        client.put_object(Bucket=bucket, Key=f"in/{i:03d}.bin", Body=f"object {i}".encode())
    client.put_object(Bucket=bucket, Key="other/skip.bin", Body=b"x")
    store = S3Store(bucket, "in", page_size=10)
    blobs = list(store.list())
    assert [b.key for b in blobs] == [f"in/{i:03d}.bin" for i in range(25)]
    assert all(b.version for b in blobs)
    sha = store.download("in/007.bin", tmp_path / "x", max_bytes=1000)
    assert sha == hashlib.sha256(b"object 7").hexdigest()
    assert store.read_head("in/007.bin", 3) == b"obj"
    uri = store.put_file("pages/p1.jpg", tmp_path / "x", "image/jpeg")
    assert uri == f"s3://{bucket}/in/pages/p1.jpg"


def test_s3_overwrite_changes_version(s3_env: SeaweedS3, bucket: str) -> None:
    client = s3_env.client()
    client.put_object(Bucket=bucket, Key="a.pdf", Body=b"one")
    before = next(S3Store(bucket).list()).version
    client.put_object(Bucket=bucket, Key="a.pdf", Body=b"two")
    assert next(S3Store(bucket).list()).version != before


def test_s3_missing_object_is_an_input_error(s3_env: SeaweedS3, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="disappeared"):
        S3Store(bucket).download("nope.pdf", tmp_path / "x", 100)


def test_s3_outage_is_transient(s3_env: SeaweedS3, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.services import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(TransientError):
        list(S3Store(bucket).list())


def test_s3_missing_bucket_is_a_source_error(s3_env: SeaweedS3) -> None:
    from schemas.errors import SourceError

    with pytest.raises(SourceError, match="bucket does not exist"):
        list(S3Store("no-such-bucket-here").list())
