"""A real Label Studio round trip (Label Studio 1.23 from its own virtual environment, started by the fixture with
a user and a personal access token made over its API): a run over sample-inbox files, its review items pushed as tasks
whose images load, annotations submitted through Label Studio's API pulled back as validated corrections, the
trusted result in `docflow show` and `docflow export results`, and the corrected class learned by the classifier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from tasks.review.label_studio import Connection
from tests.integration.conftest import Configure
from tests.services import REPO, LabelStudioServer, SeaweedS3
from tests.support.browser import Page
from tests.support.label_studio import ReviewerClient

runner = CliRunner()
INVOICE = "invoice2data_AzureInterior.pdf"
PHOTO = "photo_donut_coffee_122.jpg"
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")
ARTIFACTS = REPO / "tests" / "artifacts"


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _inbox(sample_inbox: Path, tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    shutil.copy(sample_inbox / "documents" / INVOICE, inbox)
    shutil.copy(sample_inbox / "images" / PHOTO, inbox)
    return inbox


def _screenshot_task(label_studio: LabelStudioServer, project: int, task_id: int) -> None:
    """What a reviewer sees: the pushed task open in Label Studio's labeling view (headless Chromium, logged in
    as the reviewer), saved as a test artifact."""
    with httpx.Client(base_url=label_studio.url, timeout=30) as browser_login:
        browser_login.get("/user/login/")
        browser_login.post(
            "/user/login/",
            data={
                "email": LabelStudioServer.EMAIL,
                "password": LabelStudioServer.PASSWORD,
                "csrfmiddlewaretoken": browser_login.cookies["csrftoken"],
            },
            headers={"Referer": f"{label_studio.url}/user/login/"},
        )
        session = browser_login.cookies["sessionid"]
    with Page() as page:
        page.set_cookie(label_studio.url, "sessionid", session)
        text = page.open(f"{label_studio.url}/projects/{project}/data?task={task_id}", wait_for_text="Submit")
        assert "receipt" in text and "invoice" in text  # the class choices, the model's one selected
        page.screenshot(ARTIFACTS / "label-studio-task.png")


def _choice(label: str) -> list[dict[str, object]]:
    return [{"from_name": "label", "to_name": "page", "type": "choices", "value": {"choices": [label]}}]


@pytest.mark.usefixtures("prefect_harness")
def test_push_annotate_pull_with_page_images_from_s3(
    configure: Configure,
    sample_inbox: Path,
    tmp_path: Path,
    s3_env: SeaweedS3,
    bucket: str,
    label_studio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    learned = tmp_path / "learned"
    inbox = tmp_path / "inbox"
    shutil.copytree(sample_inbox, inbox, ignore=shutil.ignore_patterns("SOURCES.md"))
    configure(
        database_url=f"sqlite:///{tmp_path / 'ls.db'}",
        source=str(inbox),
        derived_store=f"s3://{bucket}/derived",
        review_audit_rate=1,  # every class becomes a review item
        class_learned_examples=str(learned),
    )
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    _invoke("run")
    model_class = json.loads(_invoke("show", f"documents/{INVOICE}", "--json"))["classification"]["label"]
    wrong = "receipt" if model_class != "receipt" else "letter"  # what the reviewer says it is

    output = _invoke("review", "push", "--stage", "classification", "--create", "docflow classes")
    # Every readable document and image of the sample inbox was classified; the audit rate made each an item.
    before = tmp_path / "before.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(before))
    classified = {r["key"] for r in map(json.loads, before.read_text().splitlines()) if r["class_label"]}
    assert {f"documents/{INVOICE}", f"images/{PHOTO}"} < classified
    assert f"pushed {len(classified)} item(s) to Label Studio project" in output
    project = int(output.split("project")[1].split()[0])
    with ReviewerClient(Connection(label_studio.url, label_studio.token)) as studio:
        tasks = {t["data"]["key"].split("/", 1)[1]: t for t in studio.tasks(project)}
        assert {t["data"]["key"] for t in tasks.values()} == classified
        for task in tasks.values():  # the presigned page URL serves the image to a plain GET
            response = httpx.get(task["data"]["image"], timeout=30)
            assert response.status_code == 200 and response.content.startswith(IMAGE_MAGIC)
            assert task["total_predictions"] == 1
        _screenshot_task(label_studio, project, tasks[INVOICE]["id"])
        studio.annotate(tasks[INVOICE]["id"], _choice(wrong))
        studio.annotate(tasks[PHOTO]["id"], _choice("banana"))  # not a class: rejected with the reason

    pulled = _invoke("review", "pull", "--project", str(project))
    assert "1 item(s) resolved, 0 unchanged (already stored), 1 rejected" in pulled
    assert "unknown class 'banana'" in pulled and "1 page(s) added to class examples" in pulled

    shown = json.loads(_invoke("show", f"documents/{INVOICE}", "--json"))
    assert shown["classification"]["corrected"] == wrong and shown["classification"]["label"] == model_class
    assert [(r["status"], r["reviewer"]) for r in shown["reviews"]] == [("resolved", LabelStudioServer.EMAIL)]
    out = tmp_path / "results.jsonl"
    _invoke("export", "results", "--format", "jsonl", "--out", str(out))
    records = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    invoice = records[f"documents/{INVOICE}"]
    assert invoice["class_label"] == wrong and invoice["corrected"] == ["classification"]

    assert "0 item(s) resolved, 1 unchanged (already stored), 1 rejected" in _invoke(
        "review", "pull", "--project", str(project)
    )
    assert "pushed 0 item(s)" in _invoke("review", "push", "--project", str(project), "--stage", "classification")

    # The correction taught the classifier: the same page, processed again, gets the reviewer's class.
    _invoke("backfill", "--since", "2000-01-01", "--force", "--prefix", "documents/")
    again = json.loads(_invoke("show", f"documents/{INVOICE}", "--json"))["classification"]
    assert again["label"] == wrong, again


@pytest.mark.usefixtures("prefect_harness")
def test_local_pages_and_recordings_are_served_by_label_studio(
    configure: Configure,
    sample_inbox: Path,
    tmp_path: Path,
    label_studio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    derived = label_studio.files_root / tmp_path.name / "derived"
    inbox = _inbox(sample_inbox, label_studio.files_root / tmp_path.name)
    shutil.copy(sample_inbox / "calls" / "fasterwhisper_jfk.flac", inbox)
    configure(
        database_url=f"sqlite:///{tmp_path / 'ls.db'}",
        source=str(inbox),
        derived_store=str(derived),
        review_audit_rate=1,
        review_local_files_root=str(label_studio.files_root),
    )
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    _invoke("run")
    output = _invoke("review", "push", "--stage", "classification", "--create", "docflow local pages")
    project = int(output.split("project")[1].split()[0])
    with ReviewerClient(Connection(label_studio.url, label_studio.token)) as studio:
        for task in studio.tasks(project):
            assert task["data"]["image"].startswith("/data/local-files/?d=")
            response = httpx.get(label_studio.url + task["data"]["image"], headers=studio.access_header(), timeout=30)
            assert response.status_code == 200 and response.content.startswith(IMAGE_MAGIC)
    # A call is reviewed against its recording: the audio served the same way, the transcript one row per utterance.
    calls = _invoke("review", "push", "--stage", "transcription", "--create", "docflow calls")
    assert "pushed 1 item(s)" in calls
    with ReviewerClient(Connection(label_studio.url, label_studio.token)) as studio:
        (task,) = studio.tasks(int(calls.split("project")[1].split()[0]))
        response = httpx.get(label_studio.url + task["data"]["audio"], headers=studio.access_header(), timeout=30)
        assert response.status_code == 200 and response.content.startswith(b"fLaC")
    # Without the local-files root, a local page cannot be pushed: a clear error, nothing half-sent.
    monkeypatch.delenv("DOCFLOW_REVIEW_LOCAL_FILES_ROOT")
    _invoke("backfill", "--since", "2000-01-01", "--force")
    refused = runner.invoke(app, ["review", "push", "--project", str(project), "--stage", "classification"])
    assert refused.exit_code == 2 and "LOCAL_FILES_DOCUMENT_ROOT" in refused.output
