"""What the command line says about itself (`--help`, `--version`) and the words it uses for review reasons."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flows.cli.main import app
from tasks.display import REASON_SENTENCES, reason_sentence, reasons_line

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the app, with the words that reach it."""
    found = [(path, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "docflow")
def test_help_shows_flags_as_flags_and_values_by_kind(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert not re.search(r"<(bool|str|int|float|list\[[a-z]+\]|path|int range)>", text), text


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "docflow")
def test_no_help_sentence_is_broken_where_the_source_was_wrapped(path: tuple[str, ...]) -> None:
    """On a terminal wide enough, each paragraph of a command's help, and each command's line in its group's list,
    is one line: a line end of the docstring is never a line end on the screen."""
    lines = [" ".join(re.sub(r"[│╭╮╰╯─]", " ", line).split()) for line in _help(path).splitlines()]
    command = dict(COMMANDS)[path]
    for paragraph in re.split(r"\n\s*\n", (command.help or "").strip()):
        words = " ".join(paragraph.split())
        assert any(words in line for line in lines), f"{' '.join(path)}: {words!r} is broken across lines"
    for name, sub in getattr(command, "commands", {}).items():
        first = " ".join(re.split(r"\n\s*\n", (sub.help or "").strip())[0].split())
        assert any(line.startswith(f"{name} {first}") for line in lines), f"{name}: {first!r} is broken"


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"docflow {version('docflow')}\n"


def _raised_review_codes() -> set[str]:
    """Every review reason code the pipeline can raise: written out in ReviewReason(...) calls under tasks/, and
    the grounding doubts' table."""
    from tasks.extract.extraction import _DOUBTS

    codes = {code for code, _ in _DOUBTS.values()}
    for path in (ROOT / "tasks").rglob("*.py"):
        text = path.read_text()
        codes |= set(re.findall(r"ReviewReason\(\s*stage=\"\w+\",\s*code=\"(\w+)\"", text))
    return codes | {"audit"}


def test_every_review_reason_code_has_a_sentence() -> None:
    codes = _raised_review_codes()
    assert {"no_text", "uncertain_class", "ungrounded_value", "repetition"} <= codes  # the scan finds them
    assert codes <= set(REASON_SENTENCES), codes - set(REASON_SENTENCES)


def test_reasons_read_as_sentences_with_their_field_and_figure() -> None:
    assert reason_sentence("no_text") == ("no text found on the page (OCR read nothing), so nothing could be extracted")
    assert reason_sentence("ungrounded_value", field="due_date", value="2014-08-31") == (
        "due_date is not printed on the page"
    )
    assert reason_sentence("uncertain_class", value=0.4234) == (
        "the document's class is unsure (best guess at probability 0.42)"
    )
    assert reason_sentence("uncertain_class") == "the document's class is unsure"
    assert reason_sentence("little_speech", value=0.05) == "little speech in the recording (5% of it)"
    assert reason_sentence("new_code", message="what the stage said") == "what the stage said"
    assert reason_sentence("new_code") == "new code"


def test_an_objects_reasons_fit_one_line() -> None:
    class Reason:
        def __init__(self, code: str, field: str | None = None) -> None:
            self.code, self.field, self.value, self.message = code, field, None, None

    line = reasons_line([Reason("missing_value", "total"), Reason("missing_value", "total"), Reason("no_text")])
    assert line == (
        "total is empty, but such documents always print it; "
        "no text found on the page (OCR read nothing), so nothing could be extracted"
    )
    assert len(reasons_line([Reason("missing_value", f"field_{i}") for i in range(50)])) == 240
    assert reasons_line([]) == "waiting for a person"


def test_the_run_artifact_says_what_each_review_reason_means() -> None:
    from schemas.records import ReviewOpened, ReviewQueueSummary, RunKind, RunSummary
    from tasks.run.report import run_markdown

    review = ReviewQueueSummary(
        opened=(ReviewOpened(stage="extraction", reason="no_text", items=2),), backlog={"extraction": 2}
    )
    summary = RunSummary(
        run_id="r",
        kind=RunKind.NIGHTLY,
        status="completed",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=None,
        listed=2,
        planned=2,
        processed=2,
        by_status={},
        by_kind={},
        failures=(),
        review=review,
    )
    assert (
        "| extraction | no_text | 2 | no text found on the page (OCR read nothing), so nothing could be extracted |"
        in run_markdown(summary)
    )


def test_the_readme_says_what_status_and_run_end_with() -> None:
    """The README once said `status` ends with the documents per class; it ends with what waits for review (the
    integration tests check the output: tests/integration/test_cli_reading.py)."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "`docflow status` ends with the documents per class label" not in readme
    assert "`docflow status` starts with the database it read and ends with the objects waiting for review" in readme
    assert "`docflow run` ends with every file's outcome" in readme
    for command in ("docflow review list", "docflow show two_party_call_mono.flac", "docflow --version"):
        assert command in readme
