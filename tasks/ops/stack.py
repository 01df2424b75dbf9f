"""`docflow stack`: a local stack on 127.0.0.1 from what the repo installs: PostgreSQL (docflow's database and
Prefect's), SeaweedFS (S3) with the inbox and derived buckets, a Prefect server on that Postgres, and N workers
polling the work pool. Logs and PIDs live under one state directory; `down` stops only what `up` started there."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ConfigError
from tasks.ops.waiting import wait_until

ACCESS_KEY, SECRET_KEY = "docflow", "docflow-secret"


@dataclass(frozen=True)
class StackPlan:
    """Where the stack lives and listens, and the work pool its workers poll: the settings' values (StackSettings,
    DeploySettings.work_pool), which declare the defaults."""

    state_dir: Path
    pg_port: int
    s3_port: int
    prefect_port: int
    bucket: str
    work_pool: str

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/postgres"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def environment(self) -> dict[str, str]:
        """The variables docflow and Prefect need to use the stack (what `docflow stack env` prints)."""
        return {
            "DOCFLOW_DATABASE_URL": self.database_url,
            "DOCFLOW_SOURCE": f"s3://{self.bucket}/",
            "DOCFLOW_DERIVED_STORE": f"s3://{self.bucket}-derived/",
            "DOCFLOW_WORK_POOL": self.work_pool,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "PREFECT_API_URL": self.api_url,
        }


@dataclass(frozen=True)
class Service:
    name: str
    running: bool
    pid: int | None
    where: str


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        raise ConfigError("PostgreSQL server not installed (apt-get install postgresql; `make test` does)")
    return Path(initdb).parent


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _postgres_tool(command: list[str]) -> None:
    """Run initdb or pg_ctl (as the postgres user when we are root: PostgreSQL refuses root); a failure says why."""
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        hint = " (as root the stack runs PostgreSQL as `postgres`: every folder above DOCFLOW_STACK_DIR must be "
        hint += "searchable by it)" if os.geteuid() == 0 else ""
        raise ConfigError(f"{Path(command[0]).name} failed: {why[0]}{hint}")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    try:
        wait_until(check, timeout_s=timeout_s, interval_s=0.5, what=what)
    except TimeoutError as exc:
        raise ConfigError(str(exc)) from None


class Stack:
    def __init__(self, plan: StackPlan) -> None:
        self.plan = plan
        self.dir = plan.state_dir

    # --- up ---------------------------------------------------------------------------------------------------

    def up(self, workers: int, runs_per_worker: int = 2) -> list[Service]:
        self.dir.mkdir(parents=True, exist_ok=True)
        plan = {"workers": workers, "runs_per_worker": runs_per_worker, **self.plan.environment()}
        (self.dir / "plan.json").write_text(json.dumps(plan, indent=1))
        self._postgres()
        self._seaweed()
        self._prefect()
        for index in range(workers):
            self._worker(index, runs_per_worker)
        return self.status()

    def _postgres(self) -> None:
        pg, data = _pg_bin(), self.dir / "pg" / "data"
        if self._pg_running():
            return
        if not data.exists():
            data.parent.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(data.parent, "postgres")
            initdb = [str(pg / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"]
            _postgres_tool(initdb)
        if not _free(self.plan.pg_port):
            raise ConfigError(f"port {self.plan.pg_port} is taken (DOCFLOW_STACK_PG_PORT)")
        options = f"-p {self.plan.pg_port} -k {data.parent} -c listen_addresses=127.0.0.1"
        start = [
            str(pg / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data.parent / "postgres.log"),  # the postgres user's own folder: it writes the log
            "-w",
            "start",
            "-o",
            options,
        ]
        _postgres_tool(start)
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.plan.pg_port} user=postgres", autocommit=True) as c:
            if not c.execute("select 1 from pg_database where datname = 'prefect'").fetchone():
                c.execute("create database prefect")

    def _pg_running(self) -> bool:
        data = self.dir / "pg" / "data"
        if not data.exists():
            return False
        done = subprocess.run(_as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(data), "status"]), capture_output=True)
        return done.returncode == 0

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        if self._alive(name):
            return
        log = (self.dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True, cwd=self.dir)
        (self.dir / f"{name}.pid").write_text(str(proc.pid))

    def _seaweed(self) -> None:
        if not _free(self.plan.s3_port) and not self._alive("seaweedfs"):
            raise ConfigError(f"port {self.plan.s3_port} is taken (DOCFLOW_STACK_S3_PORT)")
        weed = shutil.which("weed") or _bin("weed")
        (self.dir / "weed").mkdir(exist_ok=True)
        command = [weed, "mini", f"-dir={self.dir / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        command += ["-master.telemetry=false", "-webdav=false", "-admin.ui=false", f"-s3.port={self.plan.s3_port}"]
        command += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
        self._spawn(
            "seaweedfs", command, {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        )

        def buckets() -> bool:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{self.plan.s3_port}",
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )
            have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            for bucket in (self.plan.bucket, f"{self.plan.bucket}-derived"):
                if bucket not in have:
                    client.create_bucket(Bucket=bucket)
            return True

        _wait(buckets, "SeaweedFS", 60)

    def _prefect(self) -> None:
        if not _free(self.plan.prefect_port) and not self._alive("prefect-server"):
            raise ConfigError(f"port {self.plan.prefect_port} is taken (DOCFLOW_STACK_PREFECT_PORT)")
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.dir / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://postgres@127.0.0.1:{self.plan.pg_port}/prefect"
            ),
            "PREFECT_UI_API_URL": self.plan.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        command = [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.plan.prefect_port)]
        self._spawn("prefect-server", command, env)

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.plan.api_url}/health", timeout=5) as response:
                return bool(response.status == 200)

        _wait(healthy, "the Prefect server", 180)

    def _worker(self, index: int, runs_per_worker: int) -> None:
        env = {**os.environ, **self.plan.environment(), "PREFECT_HOME": str(self.dir / "prefect-home")}
        command = [_bin("prefect"), "worker", "start", "--pool", self.plan.work_pool, "--name", f"stack-worker-{index}"]
        command += ["--limit", str(runs_per_worker)]
        self._spawn(f"worker-{index}", command, env)

    # --- status and down ------------------------------------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        path = self.dir / f"{name}.pid"
        return int(path.read_text()) if path.exists() else None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _names(self) -> list[str]:
        workers = sorted(p.stem for p in self.dir.glob("worker-*.pid"))
        return ["seaweedfs", "prefect-server", *workers]

    def status(self) -> list[Service]:
        where = {
            "seaweedfs": f"S3 http://127.0.0.1:{self.plan.s3_port}, buckets {self.plan.bucket}(-derived)",
            "prefect-server": f"UI http://127.0.0.1:{self.plan.prefect_port}, API {self.plan.api_url}",
        }
        services = [
            Service(
                "postgres",
                self._pg_running(),
                None,
                f"127.0.0.1:{self.plan.pg_port} (docflow: postgres, Prefect: prefect)",
            )
        ]
        for name in self._names():
            where_text = where.get(name, f"polls work pool {self.plan.work_pool}")
            services.append(Service(name, self._alive(name), self._pid(name), where_text))
        return services

    def down(self) -> list[str]:
        """Stop what `up` started here: workers first (two SIGTERMs: the first starts a graceful shutdown), then
        the server and the store, then Postgres. Returns what was stopped."""
        stopped = []
        for name in reversed(self._names()):
            pid = self._pid(name)
            if pid is not None and self._alive(name):
                self._stop_group(pid)
                stopped.append(name)
            (self.dir / f"{name}.pid").unlink(missing_ok=True)
        if self._pg_running():
            stop = [str(_pg_bin() / "pg_ctl"), "-D", str(self.dir / "pg" / "data"), "-m", "fast", "-w", "stop"]
            subprocess.run(_as_postgres(stop), check=False, capture_output=True)
            stopped.append("postgres")
        return stopped

    @staticmethod
    def _stop_group(pid: int) -> None:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.2)
