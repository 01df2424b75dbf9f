"""The review loop through Label Studio when things go wrong, against a real Label Studio (the `label_studio`
fixture) and real HTTP servers that are not Label Studio: an empty annotation is refused and a partial one keeps
the model's other values (never a wiped extraction); a `--format label-studio` file with local pages works with
the local-files serving `make label-studio` starts; a server answering HTML or JSON without the expected fields,
a malformed port and a password in a URL each give one clean line (exit 1 or 2), never a traceback or a secret."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from storage.db import migrate
from tasks.review.label_studio import Connection
from tests.integration.conftest import Configure
from tests.services import LabelStudioServer, free_port
from tests.support.label_studio import ReviewerClient

runner = CliRunner()
INVOICE = "invoice2data_AzureInterior.pdf"
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")
SECRET = "S3cr3t-pw"


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _refused(exit_code: int, *args: str) -> str:
    """A command that must fail cleanly: the exit code, one error line, no traceback, no secret."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and SECRET not in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def _results(tmp_path: Path) -> dict[str, dict[str, object]]:
    out = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(out))
    return {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.usefixtures("prefect_harness")
def test_a_label_studio_file_with_local_pages_and_partial_answers_on_the_defaults(
    configure: Configure,
    sample_inbox: Path,
    tmp_path: Path,
    label_studio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The defaults, as `make label-studio` and `make run` have them: docflow runs in the folder Label Studio
    # serves (LOCAL_FILES_DOCUMENT_ROOT), derived files in ./.docflow/derived, no DOCFLOW_REVIEW_LOCAL_FILES_ROOT.
    root = label_studio.files_root
    monkeypatch.chdir(root)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / INVOICE, inbox)
    derived = f".docflow/derived-{tmp_path.name}"
    configure(
        database_url=f"sqlite:///{tmp_path / 'ls.db'}",
        source=str(inbox),
        derived_store=derived,
        extract=True,
        review_audit_rate=1,  # the extraction becomes a review item whatever the model says
    )
    monkeypatch.delenv("DOCFLOW_REVIEW_LOCAL_FILES_ROOT", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    _invoke("run")
    before = _results(tmp_path)[INVOICE]["data"]
    assert isinstance(before, dict) and any(v not in (None, []) for v in before.values()), before

    tasks_file = tmp_path / "tasks.json"
    written = _invoke("review", "export", "--format", "label-studio", "--stage", "extraction", "--out", str(tasks_file))
    assert "wrote 1 review item(s)" in written
    said = " ".join(written.split())
    assert f"LOCAL_FILES_DOCUMENT_ROOT={root.resolve()}" in said and "make label-studio" in said
    assert str((root / derived).resolve()) in said  # the local storage path the project needs

    # A reviewer does what the note says: a project with docflow's config, a local files storage over the
    # derived folder, the file imported. The page loads.
    config = _invoke("review", "label-config", "--schema", "invoice")
    with ReviewerClient(Connection(label_studio.url, label_studio.token)) as studio:
        project = studio.create_project("docflow file import", config)
        studio.add_local_storage(project, str((root / derived).resolve()))
        studio._call("POST", f"/api/projects/{project}/import", json=json.loads(tasks_file.read_text()))
        (task,) = studio.tasks(project)
        assert task["data"]["image"].startswith("/data/local-files/?d=.docflow/")
        page = httpx.get(label_studio.url + task["data"]["image"], headers=studio.access_header(), timeout=30)
        assert page.status_code == 200 and page.content.startswith(IMAGE_MAGIC)

        # An empty submission is refused with its reason: the extraction stays as the model gave it.
        studio.annotate(task["id"], [])
        pulled = _invoke("review", "pull", "--project", str(project))
        assert "0 item(s) resolved" in pulled and "1 rejected" in pulled and "empty annotation" in pulled
        assert _results(tmp_path)[INVOICE]["data"] == before

        # A partial answer (only the total, as a reviewer who deleted the other fields' rows) corrects the total
        # and keeps every other value the model gave.
        total = {"from_name": "total", "to_name": "page", "type": "textarea", "value": {"text": ["999.00"]}}
        studio.annotate(task["id"], [total])
    pulled = " ".join(_invoke("review", "pull", "--project", str(project)).split())
    record = _results(tmp_path)[INVOICE]
    after = record["data"]
    assert isinstance(after, dict), pulled
    assert "1 item(s) resolved" in pulled and record["corrected"] == ["extraction"], pulled
    assert str(after["total"]).startswith("999")
    kept = {k: v for k, v in before.items() if k != "total" and v not in (None, [])}
    assert kept and all(after[k] not in (None, []) for k in kept), (before, after)


def _empty_database(configure: Configure, tmp_path: Path) -> None:
    """A docflow database no run has filled yet (the review commands refuse to create one)."""
    url = f"sqlite:///{tmp_path / 'safety.db'}"
    configure(database_url=url)
    migrate(url)


def test_answers_of_a_real_label_studio_at_a_wrong_path_are_one_clean_line(
    configure: Configure, tmp_path: Path, label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _empty_database(configure, tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_URL", f"{label_studio.url}/user/login")  # the address of its login page
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    error = _refused(1, "review", "pull", "--project", "1")
    assert "an HTML page" in error and "<" not in error


# --- servers that are not Label Studio ------------------------------------------------------------------------


class _Server:
    """A real HTTP server on a free port answering every request with one body (HTML, or JSON that lacks what
    Label Studio's API answers)."""

    def __init__(self, body: str, content_type: str) -> None:
        payload = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *_: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://admin:{SECRET}@127.0.0.1:{self.http.server_port}"

    def __enter__(self) -> _Server:
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.http.shutdown()
        self.http.server_close()


HTML = "<!DOCTYPE html><html><head><title>Sign in - Proxy</title></head><body>log in</body></html>"


@pytest.fixture
def studio_env(configure: Configure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _empty_database(configure, tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "legacy-token")
    yield


@pytest.mark.usefixtures("studio_env")
@pytest.mark.parametrize(
    ("body", "content_type", "api_key", "command", "reason"),
    [
        (HTML, "text/html", "legacy-token", "pull", "with an HTML page ('Sign in - Proxy'), not a JSON export"),
        (HTML, "text/html", "a.b.c", "pull", "with an HTML page ('Sign in - Proxy'), not JSON"),
        (HTML, "text/html", "legacy-token", "push", "with an HTML page ('Sign in - Proxy'), not JSON"),
        ("{}", "application/json", "legacy-token", "pull", "not a JSON export (a list of tasks)"),
        ("{}", "application/json", "a.b.c", "pull", "answered POST /api/token/refresh without an access token"),
        ("{}", "application/json", "legacy-token", "push", "answered POST /api/projects without an id"),
        ('{"results": "x"}', "application/json", "legacy-token", "push", "without an id"),
    ],
)
def test_a_server_that_is_not_label_studio_is_one_clean_error(
    body: str, content_type: str, api_key: str, command: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", api_key)
    args = ["pull", "--project", "1"] if command == "pull" else ["push", "--create", "x"]
    with _Server(body, content_type) as server:
        monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
        error = _refused(1, "review", *args)
    assert reason in " ".join(error.split()) and "admin:***@127.0.0.1" in error


@pytest.mark.usefixtures("studio_env")
def test_a_password_in_an_unreachable_label_studio_url_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://admin:{SECRET}@127.0.0.1:{free_port()}/?token={SECRET}")
    error = _refused(1, "review", "pull", "--project", "1")
    assert "cannot reach Label Studio at http://admin:***@127.0.0.1" in error and "token=***" in error


@pytest.mark.usefixtures("studio_env")
@pytest.mark.parametrize(
    "url", [f"http://admin:{SECRET}@127.0.0.1:99999", f"http://admin:{SECRET}@h:port/", f"ftp://a:{SECRET}@h"]
)
def test_a_malformed_label_studio_url_is_exit_2(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    for args in (["pull", "--project", "1"], ["push", "--create", "x"]):
        assert "LABEL_STUDIO_URL" in _refused(2, "review", *args)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"postgresql+psycopg://u:{SECRET}@localhost:notaport/db", "its port 'notaport' is not a number"),
        (f"postgresql+psycopg://u:{SECRET}@localhost:99999/db?password={SECRET}", "has port 99999"),
        (f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db?password={SECRET}&sslpassword={SECRET}", "password=***"),
    ],
)
def test_a_bad_database_url_is_exit_2_without_its_password(
    url: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", url)
    for args in (
        ["status"],
        ["review", "pull", "--project", "1"],
        ["review", "export", "--format", "csv", "--out", "x"],
    ):
        assert reason in _refused(2, *args)
