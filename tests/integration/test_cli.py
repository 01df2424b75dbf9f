"""The `docflow` command as a user runs it (in-process through Typer's runner, against the real Prefect harness)."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli.main import app
from tests.integration.conftest import Configure
from tests.support.prefect_logs import flow_run_logs

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "backfill", "status"):
        assert command in result.output


def test_invalid_setting_is_reported_by_name(configure: Configure, tmp_path: Path) -> None:
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", pdf_dpi=5000)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "DOCFLOW_PDF_DPI" in result.output


def test_backfill_rejects_an_empty_window(configure: Configure, tmp_path: Path) -> None:
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    result = runner.invoke(app, ["backfill", "--since", "2026-02-01", "--until", "2026-01-01"])
    assert result.exit_code != 0
    assert "--until must be after --since" in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_run_then_status_json(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "docs").mkdir(parents=True)
    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox / "docs")
    shutil.copy(sample_inbox / "documents" / "pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf", inbox / "docs")
    configure(database_url=f"sqlite:///{tmp_path / 'cli.db'}")

    result = runner.invoke(app, ["run", "--source", str(inbox)])
    assert result.exit_code == 0, result.output
    assert "encrypted PDF: password required" in result.output
    # Both PDFs were preprocessed, the readable one (one page) classified: the summary gives each stage's counts.
    assert "stage preprocess: 2 object(s), 1 page(s) in " in result.output
    assert "stage classify: 1 object(s), 1 page(s), 1 forward batch(es), mean fill 6% in " in result.output
    # It ends with every file's outcome, and what to run next.
    lines = result.output.splitlines()
    assert lines[lines.index("done (1):") + 1] == "  docs/invoice2data_AzureInterior.pdf"
    failed = lines.index("failed (1):")
    assert lines[failed + 1] == "  docs/pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf: encrypted PDF: password required"
    assert lines[lines.index("next:") + 1].startswith("  docflow show docs/pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf")
    assert lines[-1].startswith("  docflow status") and f"{tmp_path / 'cli.db'}" in lines[-1]

    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0
    report = json.loads(status.stdout)
    assert report["objects"] == {"done": 1, "failed": 1}
    assert report["by_kind"] == {"pdf": {"done": 1, "failed": 1}}
    assert report["failures"][0]["key"] == "docs/pdfjs_issue3371-encrypted-pw-ELXRTQWS.pdf"
    assert report["failures"][0]["error"] == "encrypted PDF: password required"
    (run,) = report["runs"]
    assert (run["kind"], run["processed"], run["failed"], run["status"]) == ("nightly", 2, 1, "completed")
    assert run["started_at"] and run["id"]
    # The CLI's Prefect defaults still send the per-stage counts to the flow run's logs (what the UI shows).
    assert any(m.startswith("stage preprocess: 2 object(s)") for m in flow_run_logs(run["id"], "stage classify:"))

    again = runner.invoke(
        app, ["backfill", "--since", "2000-01-01", "--source", str(inbox), "--force", "--kind", "pdf"]
    )
    assert again.exit_code == 0, again.output
    runs = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["runs"]
    assert [r["kind"] for r in runs] == ["backfill", "nightly"]  # newest first
    assert runs[0]["processed"] == 2


@pytest.mark.parametrize("variable", ["class_routes", "class_labels", "class_templates"])
def test_unparsable_json_setting_is_one_line_naming_it(configure: Configure, tmp_path: Path, variable: str) -> None:
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", **{variable: "{not json"})
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: invalid settings: DOCFLOW_{variable.upper()}: not valid JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_missing_source_folder_is_a_clear_error(configure: Configure, tmp_path: Path) -> None:
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", source=str(tmp_path / "nope"))
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: source directory does not exist: {tmp_path / 'nope'}"
    # Checked before the run starts: no run is recorded, no database created.
    assert not (tmp_path / "x.db").exists()


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing bucket", "error: bucket does not exist: s3://no-such-bucket"),
        ("wrong secret", "error: cannot list s3://{bucket}/: SignatureDoesNotMatch (check AWS credentials)"),
        ("no credentials", "error: cannot list s3://{bucket}/: no AWS credentials found"),
    ],
)
def test_s3_source_problems_are_one_line_and_exit_2(
    configure: Configure, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, problem: str, message: str
) -> None:
    source = "s3://no-such-bucket" if problem == "missing bucket" else f"s3://{bucket}"
    if problem == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    if problem == "no credentials":
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", source=source)
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(message.format(bucket=bucket)), last
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_missing_poppler_stops_the_run_before_any_file_is_blamed(
    configure: Configure, sample_inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox)
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", source=str(inbox))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no poppler, no tesseract
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("error: pdfinfo is not installed or not on PATH: install poppler-utils")
    )
    report = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert report["failures"] == []


@pytest.mark.usefixtures("prefect_harness")
def test_show_prints_a_call_as_a_dialogue(configure: Configure, corpus: Path, tmp_path: Path) -> None:
    from tests.support.audio import decode
    from tests.support.evaluation import two_party_call

    jfk = decode(corpus / "audio" / "fasterwhisper_jfk.flac", max_duration_s=60)
    reader = decode(corpus / "audio" / "ljspeech_LJ001-0004.flac", max_duration_s=60)
    left, right, _ = two_party_call((jfk, reader), turns=4)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with wave.open(str(inbox / "call.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.stack([left, right], axis=1).clip(-1, 1) * 32767).astype("<i2").tobytes())
    configure(database_url=f"sqlite:///{tmp_path / 'x.db'}", source=str(inbox))
    assert runner.invoke(app, ["run"]).exit_code == 0

    result = runner.invoke(app, ["show", "call.wav"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.strip().startswith("SPEAKER_0 (channel 0):") for line in lines)
    dialogue = [line for line in lines if line.startswith("[00:00:")]
    assert [line.split()[1] for line in dialogue] == ["SPEAKER_0:", "SPEAKER_1:", "SPEAKER_0:", "SPEAKER_1:"]
    shown = json.loads(runner.invoke(app, ["show", "call.wav", "--json"]).output)
    assert [s["speaker"] for s in shown["transcript"]["speakers"]] == ["SPEAKER_0", "SPEAKER_1"]
    assert shown["transcript"]["languages"] == ["en"]
    missing = runner.invoke(app, ["show", "no-such-key"])
    assert missing.exit_code == 1 and "no object with key or id" in missing.output
