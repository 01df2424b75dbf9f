"""The commands a person reads with (`status`, `show`, `review list`, exports, `worker --check`), on a database
seeded through the repositories, on real SQLite and real PostgreSQL: what they list and why, the references `show`
takes, hostile strings, and what happens where there is no database."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from flows.cli.main import app
from schemas.records import (
    BlobInfo,
    Classification,
    DocumentPage,
    ObjectKind,
    ObjectResult,
    ReviewReason,
    StageError,
)
from schemas.review import ReviewDraft, ReviewStage
from storage.blobstore import LocalDirStore
from storage.db import migrate, unit_of_work
from storage.repositories import ObjectRepository, eligible
from storage.review import ReviewRepository
from storage.tables import utcnow
from tests.support.hostile import MARKUP_KEYS

runner = CliRunner()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
RUN = "run-reading-1"
HOSTILE_REVIEWER = "\x1b[31mmallory[/x][link=https://evil.example]click[/link]"
NO_TEXT = ReviewReason(stage="extract", code="no_text", message="no readable text found (OCR): nothing to extract")
UNGROUNDED = ReviewReason(
    stage="extract", code="ungrounded_value", message="due_date '2014-08-31' is not printed", field="due_date"
)


def _result(*reasons: ReviewReason, error: StageError | None = None) -> ObjectResult:
    page = DocumentPage(page_number=1, uri="file:///p1", width=10, height=20, dpi=150)
    classification = Classification(
        label="invoice", probability=0.9, margin=0.5, runner_up="receipt", route="invoice", model_id="m"
    )
    if error is not None:
        return ObjectResult(kind=ObjectKind.PDF, sha256="cd" * 32, error=error)
    return ObjectResult(
        kind=ObjectKind.PDF, sha256="ab" * 32, pages=(page,), classification=classification, review_reasons=reasons
    )


def _seed(db_url: str, inbox: Path) -> dict[str, int]:
    """Objects under a local source folder: done, waiting for review (with review items), failed, and one whose
    review a hostile reviewer resolved. Returns their ids by key."""
    migrate(db_url)
    source = LocalDirStore(inbox).uri
    outcomes = {
        "documents/invoice.pdf": _result(UNGROUNDED),
        "documents/blank.pdf": _result(NO_TEXT),
        "scans/a.pdf": _result(),
        "documents/a.pdf": _result(),
        "documents/broken.pdf": _result(
            error=StageError(stage="preprocess", code="encrypted", message="encrypted PDF: password required")
        ),
        MARKUP_KEYS[0]: _result(NO_TEXT),
        MARKUP_KEYS[2]: _result(),
    }
    blobs = [BlobInfo(source=source, key=k, version="v1", size=10, last_modified=T0) for k in outcomes]
    ids: dict[str, int] = {}
    with unit_of_work(db_url) as session:
        objects = ObjectRepository(session)
        objects.register(blobs)
        takeable = eligible(force=False, retry_failed=False, stale_before=utcnow(), run_id=None)
        rows = objects.find_current(blobs, takeable)
        objects.claim([r.id for r in rows], RUN, takeable, max_attempts=3)
        ids = {r.key: r.id for r in rows}
    for key, result in outcomes.items():
        with unit_of_work(db_url) as session:
            assert ObjectRepository(session).record_result(ids[key], result, "test-1", RUN)
            reviews = ReviewRepository(session)
            if result.review_reasons:
                reviews.open(ids[key], [_draft(result.review_reasons)], RUN)
            if key == "scans/a.pdf":  # a resolved item: the reviewer's name and note are a person's text
                (item,) = reviews.open(ids[key], [_draft((), audit=True)], RUN)
                session.flush()
                reviews.resolve(item, {"label": "invoice"}, HOSTILE_REVIEWER)
                item.note = "[bold]note[/bold]\x1b]8;;https://evil.example\x07"
    return ids


def _draft(reasons: tuple[ReviewReason, ...], audit: bool = False) -> ReviewDraft:
    return ReviewDraft(
        stage=ReviewStage.CLASSIFICATION if audit else ReviewStage.EXTRACTION,
        schema_id="class" if audit else "invoice",
        reasons=reasons,
        audit=audit,
        model_output={"label": "invoice"} if audit else {"total": "1.00"},
        model_id="m",
        score=0.5,
    )


@pytest.fixture
def seeded(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("DOCFLOW_SOURCE", str(inbox))
    return _seed(db_url, inbox)


def _no_escapes(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output
    assert "Traceback" not in output


def test_show_prints_a_reviewers_name_and_note_as_text(seeded: dict[str, int]) -> None:
    result = runner.invoke(app, ["show", "scans/a.pdf"])
    assert result.exit_code == 0, result.output
    _no_escapes(result.output)
    assert "by \\x1b[31mmallory[/x][link=https://evil.example]click[/link]" in result.output
    assert "[bold]note[/bold]\\x1b]8;;https://evil.example\\x07" in result.output
    # Keys that are markup or escapes, shown as text.
    shown = runner.invoke(app, ["show", str(seeded[MARKUP_KEYS[0]])])
    assert shown.exit_code == 0 and MARKUP_KEYS[0] in shown.output
    shown = runner.invoke(app, ["show", str(seeded[MARKUP_KEYS[2]])])
    assert shown.exit_code == 0 and "esc\\x1b[31mred\\x1b[0m.pdf" in shown.output
    _no_escapes(shown.output)


@pytest.mark.parametrize(
    "ref",
    [
        "²",
        "1" * 23,
        "9223372036854775808",
        "[/bold]",
        "[link=https://evil.example]x[/link]",
        "\u0663",
        "0",
        " 3",
        "nul\x00.pdf",
        "%",
        "_",
    ],
)
def test_show_takes_only_ascii_ids_in_range_and_prints_any_reference_as_text(seeded: dict[str, int], ref: str) -> None:
    assert 3 in seeded.values()  # object 3 exists: "٣" (an Arabic-Indic 3) must not open it
    result = runner.invoke(app, ["show", ref])
    assert result.exit_code == 1, result.output
    _no_escapes(result.output)
    assert f"no object with key or id {ref!r}" in result.output


def test_show_finds_an_object_by_path_file_name_or_end_of_key(seeded: dict[str, int], tmp_path: Path) -> None:
    def shown_key(ref: str) -> str:
        result = runner.invoke(app, ["show", ref])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[0].split(" (id ")[0]

    assert shown_key("documents/invoice.pdf") == "documents/invoice.pdf"  # the key
    assert shown_key(str(seeded["documents/blank.pdf"])) == "documents/blank.pdf"  # the id
    assert shown_key("inbox/documents/invoice.pdf") == "documents/invoice.pdf"  # the path given to `docflow run`
    assert shown_key("./inbox/documents/invoice.pdf") == "documents/invoice.pdf"
    assert shown_key(str(tmp_path / "inbox" / "scans" / "a.pdf")) == "scans/a.pdf"  # absolute
    assert shown_key("invoice.pdf") == "documents/invoice.pdf"  # a unique file name
    assert shown_key("blank.pdf") == "documents/blank.pdf"
    assert shown_key("ken.pdf") == "documents/broken.pdf"  # a unique end of a key
    assert shown_key("Documents/INVOICE.pdf") == "documents/invoice.pdf"  # in any case, on SQLite and Postgres

    ambiguous = runner.invoke(app, ["show", "a.pdf"])
    assert ambiguous.exit_code == 1
    assert "'a.pdf' matches 2 objects" in ambiguous.output
    assert "  documents/a.pdf" in ambiguous.output and "  scans/a.pdf" in ambiguous.output

    typo = runner.invoke(app, ["show", "documents/invoce.pdf"])
    assert typo.exit_code == 1
    assert "did you mean:" in typo.output and "  documents/invoice.pdf" in typo.output
    part = runner.invoke(app, ["show", "brok.txt"])  # a part of a name
    assert part.exit_code == 1 and "did you mean:\n  documents/broken.pdf" in part.output


def test_status_lists_what_waits_for_review_with_reasons_in_words_and_what_to_run(
    seeded: dict[str, int], db_url: str
) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    _no_escapes(result.output)
    lines = result.output.splitlines()
    if db_url.startswith("sqlite"):
        assert lines[0] == f"database: {db_url} ({db_url.removeprefix('sqlite:///')})"
    else:
        assert lines[0].startswith("database: postgresql+psycopg://") and lines[0].endswith(db_url.rsplit("/", 1)[1])
    waiting = lines.index("waiting for review (3):")
    assert lines[waiting + 1 : waiting + 4] == [
        "  documents/blank.pdf: no text found on the page (OCR read nothing), so nothing could be extracted",
        "  documents/invoice.pdf: due_date is not printed on the page",
        f"  {MARKUP_KEYS[0]}: no text found on the page (OCR read nothing), so nothing could be extracted",
    ]
    assert "no_text" not in result.output.split("waiting for review")[1]
    # It ends with the commands to run next.
    next_at = lines.index("next:")
    assert next_at > waiting
    commands = [line.split("  # ")[0].strip() for line in lines[next_at + 1 :]]
    assert commands == [
        "docflow show documents/blank.pdf",
        "docflow review list",
        "docflow review export --format csv --out review.csv",
        "docflow show documents/broken.pdf",
    ]

    capped = runner.invoke(app, ["status", "--review", "1"])
    assert "waiting for review (3):" in capped.output and "  ... and 2 more:" in capped.output


def test_review_list_shows_the_open_queue_capped_with_a_count(seeded: dict[str, int]) -> None:
    result = runner.invoke(app, ["review", "list"])
    assert result.exit_code == 0, result.output
    _no_escapes(result.output)
    lines = result.output.splitlines()
    assert lines[0] == "3 review item(s) waiting for a person (extraction 3), oldest first:"
    assert any(
        line.endswith(" extraction documents/invoice.pdf: due_date is not printed on the page") for line in lines
    )
    assert any(f"extraction {MARKUP_KEYS[0]}: no text found on the page" in line for line in lines)
    capped = runner.invoke(app, ["review", "list", "--limit", "1"]).output.splitlines()
    assert len(capped) == 3 and capped[2] == "  ... and 2 more (--limit N shows more)"


def test_the_end_of_a_run_lists_every_outcome_and_what_to_run(
    seeded: dict[str, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli import main
    from schemas.records import RunKind, RunSummary
    from schemas.settings import load_settings

    summary = RunSummary(
        run_id=RUN,
        kind=RunKind.NIGHTLY,
        status="completed",
        started_at=T0,
        finished_at=T0,
        listed=7,
        planned=7,
        processed=7,
        by_status={},
        by_kind={},
        failures=(),
    )
    main._print_summary(summary, load_settings())
    out = capsys.readouterr().err
    _no_escapes(out)
    lines = out.splitlines()
    done = lines.index("done (3):")
    assert lines[done + 1 : done + 4] == ["  documents/a.pdf", "  esc\\x1b[31mred\\x1b[0m.pdf", "  scans/a.pdf"]
    assert lines.index("waiting for review (3):") > done
    assert "  documents/invoice.pdf: due_date is not printed on the page" in lines
    assert "failed (1):" in lines and "  documents/broken.pdf: encrypted PDF: password required" in lines
    assert lines[lines.index("next:") + 1].startswith("  docflow show documents/blank.pdf")
    assert lines[-1].startswith("  docflow status") and "everything in the database" in lines[-1]

    monkeypatch.setattr(main, "OUTCOMES_SHOWN", 1)
    main._print_summary(summary, load_settings())
    capped = capsys.readouterr().err.splitlines()
    assert "  ... and 2 more: docflow review list" in capped


def test_reading_commands_never_create_a_database(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", db_url)
    commands = [
        ["status"],
        ["status", "--json"],
        ["show", "x.pdf"],
        ["review", "list"],
        ["review", "export", "--format", "csv", "--out", str(tmp_path / "r.csv")],
        ["review", "import", str(tmp_path / "r.csv")],
        ["export", "results", "--format", "jsonl", "--out", str(tmp_path / "r.jsonl")],
    ]
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert result.output.startswith("error: no docflow database found at "), result.output
        assert "`docflow run` creates it" in result.output
    if db_url.startswith("sqlite"):
        database = Path(db_url.removeprefix("sqlite:///"))
        assert f"found at {database} (DOCFLOW_DATABASE_URL={db_url})" in result.output
        assert not database.exists() and list(tmp_path.iterdir()) == []
    else:
        assert inspect(create_engine(db_url)).get_table_names() == []


def test_a_bare_postgresql_url_means_psycopg_3(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(pg_url)
    bare = "postgresql://" + pg_url.split("://", 1)[1]
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", bare)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", "postgresql+psycopg2://" + pg_url.split("://", 1)[1])
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "names the driver psycopg2, which is not installed: write postgresql+psycopg://" in result.output
    assert "Traceback" not in result.output


def test_a_missing_source_folder_is_reported_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCFLOW_SOURCE", str(tmp_path / "nope"))
    started = time.monotonic()
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: source directory does not exist: {tmp_path / 'nope'}"]
    assert time.monotonic() - started < 5  # no Prefect server was started, no database created
    assert list(tmp_path.iterdir()) == []


def test_worker_check_prints_each_check_and_its_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("DOCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("DOCFLOW_SOURCE", f"{inbox},{tmp_path / 'gone'}")
    result = runner.invoke(app, ["worker", "--check"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert any(line.startswith(("ok            Prefect server", "cannot reach: PREFECT_API_URL")) for line in lines)
    assert f"ok            database sqlite:///{tmp_path / 'w.db'}" in lines
    assert f"ok            store {inbox}" in lines
    assert f"cannot reach: store {tmp_path / 'gone'}: source directory does not exist: {tmp_path / 'gone'}" in lines
