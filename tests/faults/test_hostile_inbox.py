"""One run over an inbox holding every hostile entry that once hung, crashed or exhausted a run: it ends with exit
0, every object in a terminal state with a reason a person understands, and `docflow status` still works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.cli.main import app
from storage.db import unit_of_work
from storage.tables import SourceObject
from tests.faults.conftest import Configure
from tests.support import hostile

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def _build_inbox(inbox: Path, sample_inbox: Path) -> None:
    shutil.copy(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", inbox / "good.pdf")
    hostile.fifo(inbox / "b.pdf")
    hostile.symlink_loop(inbox / "loop.pdf")
    hostile.dangling_symlink(inbox / "dangling.pdf")
    hostile.long_path(inbox)
    hostile.empty_files(inbox)
    hostile.one_hz_wav(inbox / "calls" / "one-hertz.wav")
    hostile.many_page_tiff(inbox / "fax-1000.tiff", pages=1000)
    hostile.slow_page_pdf(inbox / "flate-bomb.pdf")


EXPECTED = {  # key -> (status, error code)
    "good.pdf": ("done", None),
    "b.pdf": ("failed", "not_regular_file"),
    "loop.pdf": ("failed", "symlink_loop"),
    "dangling.pdf": ("failed", "broken_symlink"),
    "calls/one-hertz.wav": ("failed", "bad_sample_rate"),
    "fax-1000.tiff": ("done", None),
    "flate-bomb.pdf": ("failed", "render_timeout"),
    **{key: ("failed", "empty") for key in hostile.MARKUP_KEYS},
}


def test_a_run_over_every_hostile_input_ends_cleanly(configure: Configure, sample_inbox: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _build_inbox(inbox, sample_inbox)
    db = f"sqlite:///{tmp_path / 'docflow.db'}"
    configure(
        database_url=db,
        source=str(inbox),
        render_timeout_s=1,
        transcribe=False,
        review_min_class_probability=0,
        review_min_class_margin=0,
    )

    result = runner.invoke(app, ["run"])

    assert result.exit_code == 0, result.output
    with unit_of_work(db) as s:
        objects = {o.key: o for o in s.scalars(select(SourceObject))}
    assert {k: (o.status, o.error_code) for k, o in objects.items()} == EXPECTED
    assert all(o.error_message for o in objects.values() if o.status == "failed")
    tiff = objects["fax-1000.tiff"]
    assert tiff.page_count == 1000
    assert tiff.warnings == ["only the first 200 of 1000 pages were processed (DOCFLOW_MAX_PAGES)"]
    assert objects["flate-bomb.pdf"].error_code == "render_timeout"
    assert "1 s" in (objects["flate-bomb.pdf"].error_message or "")
    # The over-long path cannot be a row: it is a warning of the run.
    assert "skipped 1 object(s) whose key is longer than 1024 characters" in result.output

    # Keys are shown as they are, never interpreted: no markup, no terminal escapes, no forged lines.
    for output in (result.output, runner.invoke(app, ["status"]).output):
        assert "\x1b" not in output
        assert "h/bad[/x]markup.pdf" in output
        assert "[bold red]fake[/bold red].pdf" in output
        assert "esc\\x1b[31mred\\x1b[0m.pdf" in output
        assert "forged\\x0a12:00:00 | INFO | all good.pdf" in output
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0
    report = json.loads(status.stdout)
    assert sum(report["objects"].values()) == len(EXPECTED)
    assert report["runs"][0]["warnings"]
