"""Label Studio answers that once lost or crashed things, as pure logic: an empty or partial annotation keeps the
model's values (never a wiped extraction), a hostile export (mixed id types, huge numbers, deep nesting, odd shapes)
is rejected task by task, and URLs with secrets are shown masked wherever docflow prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.errors import ConfigError
from schemas.redaction import redact_urls, redacted_url
from schemas.review import ReviewItemView, ReviewStage
from storage.db import checked_database_url
from tasks.review.label_studio import checked_url, from_results, read_export, to_results
from tasks.review.queue import MediaLinks
from tests.support.review_items import review_item

INVOICE = {
    "vendor_name": "ACME",
    "invoice_number": "7",
    "total": "12.50",
    "line_items": [{"description": "tea", "quantity": None, "unit_price": None, "amount": "12.50"}],
}


def _invoice(item_id: int = 1) -> ReviewItemView:
    return review_item(ReviewStage.EXTRACTION, "invoice/v1", {"data": INVOICE}, item_id)


def _text(name: str, *rows: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "page", "type": "textarea", "value": {"text": list(rows)}}


# --- an empty or partial annotation ----------------------------------------------------------------------------


def test_a_partial_annotation_keeps_the_fields_it_leaves_out() -> None:
    corrected = from_results(_invoice(), [_text("total", "13.00")])
    assert corrected["total"] == "13.00"
    assert {k: corrected[k] for k in ("vendor_name", "invoice_number", "line_items")} == {
        k: INVOICE[k] for k in ("vendor_name", "invoice_number", "line_items")
    }
    # A field answered with no rows is left out too; `null` as its only row clears it, a list included.
    cleared = from_results(_invoice(), [_text("vendor_name"), _text("total", "null"), _text("line_items", "null")])
    assert cleared["vendor_name"] == "ACME" and cleared["total"] is None and cleared["line_items"] == []


@pytest.mark.parametrize("results", [[], [{"from_name": "unknown", "value": {"text": ["x"]}}], [None, 3, "x"]])
def test_an_empty_annotation_is_refused_not_stored_as_an_empty_extraction(results: list[Any]) -> None:
    with pytest.raises(ValueError, match="empty annotation"):
        from_results(_invoice(), results)


def test_an_empty_class_or_transcript_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="chose no class"):
        from_results(review_item(ReviewStage.CLASSIFICATION, "class", {"label": "invoice"}), [])
    with pytest.raises(ValueError, match="chose no class"):
        choices = {"from_name": "label", "value": {"choices": "invoice"}}  # a string, not a list of choices
        from_results(review_item(ReviewStage.CLASSIFICATION, "class", {"label": "invoice"}), [choices])
    call = review_item(ReviewStage.TRANSCRIPTION, "transcript", {"segments": []})
    with pytest.raises(ValueError, match="no transcript"):
        from_results(call, [])


@pytest.mark.parametrize("result", [{"a": 1}, "text", None, 7])
def test_a_result_that_is_not_a_list_is_refused(result: object) -> None:
    with pytest.raises(ValueError, match="not a list"):
        from_results(_invoice(), result)


@pytest.mark.parametrize("text", [5, {"a": "b"}, [1, 2], [["x"]]])
def test_answer_text_of_the_wrong_shape_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="total: the answer's text is not a list of rows"):
        from_results(_invoice(), [{"from_name": "total", "value": {"text": text}}])


def test_the_prediction_read_back_is_the_model_value() -> None:
    item = _invoice()
    back = from_results(item, to_results(item, INVOICE))
    assert {name: back[name] for name in INVOICE} == INVOICE


# --- a hostile export ------------------------------------------------------------------------------------------


def _task(item: object, result: object = None, **fields: Any) -> dict[str, Any]:
    results = [_text("total", "99.00")] if result is None else result
    return {"data": {"docflow_item": item}, "annotations": [{"id": 1, "result": results}], **fields}


def test_mixed_id_types_are_read_or_rejected_task_by_task() -> None:
    items = {i: _invoice(i) for i in (1, 2, 3)}
    export = [
        _task(1, id=10),
        _task("2", id="11"),  # ids as strings
        _task(3.0, id=12.0),  # and as integral floats
        _task(3.5, id=13),
        _task(None, id=None),
        _task({"nested": [1]}, id={"nested": 1}),
        _task(True, id=True),
        _task(10**30, id=10**30),
        _task("٣"),  # Arabic-Indic three: not an id
        {"id": 14, "meta": {"docflow_item": [1]}},
        {"id": 15, "data": "not an object"},
        [1, 2],
        "a task?",
        None,
    ]
    answers, rejected = read_export(json.dumps(export), items)
    assert [(a.item_id, a.where, a.corrected["total"]) for a in answers if a.corrected] == [
        (1, "task 10", "99.00"),
        (2, "task 11", "99.00"),
        (3, "task 12", "99.00"),
    ]
    assert len(rejected) == len(export) - 3
    reasons = {r.where: r.reason for r in rejected}
    assert reasons["task 13"] == "docflow_item 3.5 is not a review item id"
    assert reasons["task #6 in the file"] == 'docflow_item {"nested": [1]} is not a review item id'
    assert reasons["task 15"] == "no docflow_item in the task's data: not a task docflow pushed"
    assert reasons["task #12 in the file"] == "not a task object"
    assert all(len(r.reason) < 200 for r in rejected)


def test_odd_annotations_are_rejected_with_their_reason() -> None:
    items = {i: _invoice(i) for i in (1, 2, 3, 4, 5)}
    newest = _text("total", "2.00")
    export = [
        {"id": 1, "data": {"docflow_item": 1}, "annotations": {"id": 1}},
        {"id": 2, "data": {"docflow_item": 2}, "annotations": [{"id": 1, "result": {"total": "1"}}]},
        # Annotation ids of mixed types (and dates missing) still pick the newest without a crash.
        {
            "id": 3,
            "data": {"docflow_item": 3},
            "annotations": [
                {"id": "7", "result": [_text("total", "1.00")], "updated_at": "2026-01-01"},
                {"id": 8, "result": [newest], "updated_at": "2026-02-01", "completed_by": {"email": ["x"], "id": 4}},
                {"id": None, "result": [], "updated_at": 5, "was_cancelled": True},
                "not an annotation",
            ],
        },
        {"id": 4, "data": {"docflow_item": 4}, "annotations": [{"id": 1, "result": []}]},
        {"id": 5, "data": {"docflow_item": 3}, "annotations": [{"id": 1, "result": [newest]}]},  # item 3 again
        {"id": 6, "data": {"docflow_item": 5}, "annotations": [{"result": [_text("total", "[" * 5000 + "]" * 5000)]}]},
    ]
    answers, rejected = read_export(json.dumps(export), items, people={4: "ana@example.com"})
    assert [(a.item_id, a.corrected["total"] if a.corrected else None, a.reviewer) for a in answers] == [
        (3, "2.00", "ana@example.com"),
        (5, "[" * 5000 + "]" * 5000, None),  # too deep to be JSON: the text as typed, for the schema to judge
    ]
    assert {r.where: r.reason for r in rejected} == {
        "task 1": "its annotations are not a list",
        "task 2": "item 2: the annotation's result is not a list of answers",
        "task 4": "item 4: an empty annotation: it answers none of the fields (submit the fields as the model's "
        "prediction fills them in, corrected where wrong)",
        "task 5": "item 3 is answered by task 3 already",
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 10_000 + "]" * 10_000, "not a readable JSON export: nested too deeply"),
        ('[{"id": ' + "9" * 5000 + "}]", "not a readable JSON export: Exceeds the limit"),
        ("<!DOCTYPE html><html></html>", "not JSON: Expecting value"),
        ('{"tasks": []}', "not a Label Studio export (a JSON list of tasks)"),
        ("\udcff\x00garbage", "not JSON: Expecting value"),
    ],
)
def test_an_unreadable_export_is_one_rejected_file(text: str, reason: str) -> None:
    answers, rejected = read_export(text, {1: _invoice()})
    assert answers == [] and len(rejected) == 1
    assert rejected[0].where == "file" and rejected[0].reason.startswith(reason)


# --- secrets in URLs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:pw@db:5432/docflow", "postgresql+psycopg://u:***@db:5432/docflow"),
        ("postgresql+psycopg://u@db/docflow?password=pw&sslmode=require", "postgresql+psycopg://u@db/docflow?password=***&sslmode=require"),
        ("postgresql://u@db/d?sslpassword=a;PWD=b&Pass=c&secret=d&api-key=e&token=f", "postgresql://u@db/d?sslpassword=***;PWD=***&Pass=***&secret=***&api-key=***&token=***"),
        ("http://admin:PASSWORD@ls:8080/", "http://admin:***@ls:8080/"),
        ("http://admin:pa/ss@ls:8080/api", "http://admin:***@ls:8080/api"),  # an unescaped / in the password
        ("http://admin:p@ss@ls/#token=x", "http://admin:***@ls/#token=x"),
        ("http://u:pw@h:notaport/x", "http://u:***@h:notaport/x"),
        ("sqlite:///docflow.db", "sqlite:///docflow.db"),
        ("s3://bucket/a@b.pdf?keyword=1", "s3://bucket/a@b.pdf?keyword=1"),
        ("not a url", "not a url"),
    ],
)  # fmt: skip
def test_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    from flows.cli.common import redacted

    assert redacted_url(url) == shown
    assert redacted(url) == shown  # the CLI's name for it, kept for callers
    assert redact_urls(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"


@pytest.mark.parametrize("text", ["", "://", "x://@", "a://:@:?&=#", "\x00://\udcff@[", "h://" + "@:" * 5000, "%"])
def test_redaction_never_raises(text: str) -> None:
    assert isinstance(redacted_url(text), str) and isinstance(redact_urls(text), str)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql+psycopg://u:SECRET@host:notaport/db", "its port 'notaport' is not a number"),
        ("postgresql+psycopg://u:SECRET@host:99999/db?password=SECRET", "has port 99999: a port is 1 to 65535"),
        ("not a url SECRET", "is malformed"),
    ],
)
def test_a_malformed_database_url_is_a_config_error_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        checked_database_url(url)
    assert "SECRET" not in str(raised.value).replace("not a url SECRET", "")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://admin:SECRET@h:99999", "no valid port"),
        ("http://admin:SECRET@h:port", "no valid port"),
        ("ftp://admin:SECRET@h", r"not an http\(s\) address"),
        ("127.0.0.1:8080", r"not an http\(s\) address"),
        ("http://admin:SECRET@:8080", "no valid host"),
    ],
)
def test_a_malformed_label_studio_url_is_a_config_error_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        checked_url(url)
    assert "SECRET" not in str(raised.value)
    assert checked_url(" http://127.0.0.1:8080/ ") == "http://127.0.0.1:8080"


# --- local page images in a Label Studio file ------------------------------------------------------------------


def test_a_file_export_links_local_pages_under_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / ".docflow" / "derived" / "pages" / "a b.png"
    page.parent.mkdir(parents=True)
    page.write_bytes(b"\x89PNG")
    monkeypatch.chdir(tmp_path)
    links = MediaLinks(60, None)  # DOCFLOW_REVIEW_LOCAL_FILES_ROOT unset: the working folder, as make label-studio
    assert links.url(str(page)) == "/data/local-files/?d=.docflow/derived/pages/a%20b.png"
    with pytest.raises(ConfigError, match="not under the working folder"):
        links.url("/elsewhere/page.png")
    with pytest.raises(ConfigError, match="DOCFLOW_REVIEW_LOCAL_FILES_ROOT is unset"):
        MediaLinks(60, None, assume_working_dir=False).url(str(page))
