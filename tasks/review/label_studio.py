"""Label Studio: labeling configs for docflow's schemas, review items as tasks with the model's output as a
prediction, annotations read back as corrections, and a small client for its HTTP API (httpx; the SDK would pin
much of its own stack into docflow's environment).

A document field is a TextArea over the page image: one row for a single value, one row per element for a list
(columns joined by ` | `, in the schema's order). A transcript is a TextArea over the audio, one row per utterance,
`START-END SPEAKER: text`. A class is a single Choices."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel

from schemas.documents import SCHEMAS
from schemas.review import TRANSCRIPT_SCHEMA, ReviewItemView, ReviewStage
from tasks.review.answers import RejectedRow, ReviewAnswer
from tasks.review.items import model_value

ITEM_KEY = "docflow_item"  # the review item's id, in each task's data (always returned) and meta
COLUMN_SEPARATOR = " | "
_UTTERANCE = re.compile(
    r"^\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s+(?P<speaker>[^:]+):\s?(?P<text>.*)$"
)


class LabelStudioError(RuntimeError):
    """Label Studio refused or could not be reached; the message says which and what it answered."""


# --- labeling configs ----------------------------------------------------------------------------------------


def schema_names() -> list[str]:
    return [*SCHEMAS, "transcript", "class"]


def label_config(schema: str, labels: Sequence[str] = ()) -> str:
    """The labeling config for items of `schema` (a document schema name, `transcript`, or `class` with the
    labels to choose from)."""
    if schema == "class":
        choices = "".join(f"\n    <Choice value={quoteattr(label)}/>" for label in labels)
        return (
            '<View>\n  <Image name="page" value="$image"/>\n'
            f'  <Choices name="label" toName="page" choice="single" showInline="true">{choices}\n  </Choices>\n'
            "</View>\n"
        )
    if schema in ("transcript", TRANSCRIPT_SCHEMA):
        return (
            '<View>\n  <Audio name="audio" value="$audio"/>\n'
            '  <Header value="One utterance per row: START-END SPEAKER: text (seconds)"/>\n'
            '  <TextArea name="transcript" toName="audio" rows="12" editable="true" showSubmitButton="true"/>\n'
            "</View>\n"
        )
    model = _document_schema(schema)
    rows = ['<View>\n  <Image name="page" value="$image" zoom="true"/>']
    for name, field in model.model_fields.items():
        columns = _columns(field.annotation)
        hint = f" (one row each: {COLUMN_SEPARATOR.join(columns)})" if columns else ""
        if _is_list(field.annotation) and not columns:
            hint = " (one row each)"
        rows.append(f"  <Header value={quoteattr(name + hint)}/>")
        single = "" if _is_list(field.annotation) else ' maxSubmissions="1"'
        rows.append(f'  <TextArea name="{name}" toName="page" editable="true" rows="1"{single}/>')
    return "\n".join(rows) + "\n</View>\n"


def _document_schema(schema: str) -> type[BaseModel]:
    name = schema.split("/", 1)[0]
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema {schema!r}: one of {', '.join(schema_names())}")
    return SCHEMAS[name]


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list


def _columns(annotation: Any) -> list[str]:
    """The columns of a list of objects (line items), else []."""
    if not _is_list(annotation):
        return []
    (inner,) = get_args(annotation)
    return list(inner.model_fields) if isinstance(inner, type) and issubclass(inner, BaseModel) else []


def config_schema(item: ReviewItemView) -> str:
    """Which labeling config an item needs."""
    if item.stage is ReviewStage.CLASSIFICATION:
        return "class"
    if item.stage is ReviewStage.TRANSCRIPTION:
        return "transcript"
    return item.schema_id.split("/", 1)[0]


# --- tasks ---------------------------------------------------------------------------------------------------


def task(item: ReviewItemView, media_url: str) -> dict[str, Any]:
    """A Label Studio task for one item: the page image (or recording) URL, the model's output as a
    prediction (model version and score), and the item's id."""
    media = "audio" if item.stage is ReviewStage.TRANSCRIPTION else "image"
    reasons = "; ".join(r.message for r in item.reasons) or ("audit sample" if item.audit else "")
    value = model_value(item.stage, item.model_output) or {}
    prediction: dict[str, Any] = {"model_version": item.model_id, "result": to_results(item, value)}
    if item.score is not None:
        prediction["score"] = round(item.score, 4)
    return {
        "data": {media: media_url, ITEM_KEY: item.id, "key": item.key, "reasons": reasons},
        "predictions": [prediction],
        "meta": {ITEM_KEY: item.id},
    }


def to_results(item: ReviewItemView, value: dict[str, Any]) -> list[dict[str, Any]]:
    """A value in Label Studio's result format (what a prediction or an annotation holds)."""
    if item.stage is ReviewStage.CLASSIFICATION:
        return [_result("label", "page", "choices", {"choices": [value["label"]]})]
    if item.stage is ReviewStage.TRANSCRIPTION:
        rows = [f"{s['start_s']:.2f}-{s['end_s']:.2f} {s['speaker']}: {s['text']}" for s in value.get("segments", [])]
        return [_result("transcript", "audio", "textarea", {"text": rows})]
    model = _document_schema(item.schema_id)
    results = []
    for name, field in model.model_fields.items():
        field_value = value.get(name)
        if field_value in (None, [], ""):
            continue
        columns = _columns(field.annotation)
        if columns:
            rows = [COLUMN_SEPARATOR.join(_plain(element.get(c)) for c in columns) for element in field_value]
        elif _is_list(field.annotation):
            rows = [_plain(element) for element in field_value]
        else:
            rows = [_plain(field_value)]
        results.append(_result(name, "page", "textarea", {"text": rows}))
    return results


def _result(from_name: str, to_name: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": kind, "value": value}


def _plain(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def from_results(item: ReviewItemView, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An annotation's results as the item's value (validated later, with the item's schema)."""
    by_name: dict[str, dict[str, Any]] = {}
    for result in results:
        if isinstance(result, dict) and isinstance(result.get("value"), dict):
            by_name[str(result.get("from_name"))] = result["value"]
    if item.stage is ReviewStage.CLASSIFICATION:
        choices = by_name.get("label", {}).get("choices") or []
        return {"label": choices[0] if choices else ""}
    if item.stage is ReviewStage.TRANSCRIPTION:
        segments = []
        for row in _rows(by_name.get("transcript")):
            match = _UTTERANCE.match(row)
            if match is None:
                raise ValueError(f"not an utterance row (START-END SPEAKER: text): {row[:60]!r}")
            segments.append(
                {
                    "start_s": float(match["start"]),
                    "end_s": float(match["end"]),
                    "speaker": match["speaker"].strip(),
                    "text": match["text"].strip(),
                }
            )
        return {"segments": segments}
    model = _document_schema(item.schema_id)
    value: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        rows = _rows(by_name.get(name))
        columns = _columns(field.annotation)
        if columns:
            value[name] = [_row_object(row, columns) for row in rows]
        elif _is_list(field.annotation):
            value[name] = [_cell_value(row) for row in rows]
        else:
            value[name] = _cell_value(rows[0]) if rows else None
    return value


def _rows(value: dict[str, Any] | None) -> list[str]:
    text = (value or {}).get("text") or []
    rows = [text] if isinstance(text, str) else [str(t) for t in text]
    return [line for row in rows for line in row.splitlines() if line.strip()]


def _row_object(row: str, columns: list[str]) -> dict[str, Any]:
    cells = [c.strip() for c in row.split(COLUMN_SEPARATOR.strip())]
    if len(cells) != len(columns):
        raise ValueError(f"{row[:60]!r} has {len(cells)} columns, {len(columns)} expected: {', '.join(columns)}")
    return {column: _cell_value(cell) for column, cell in zip(columns, cells, strict=True)}


def _cell_value(text: str) -> Any:
    text = text.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text or None


def read_export(
    text: str, items: dict[int, ReviewItemView], people: dict[int, str] | None = None
) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    """Label Studio's JSON export (a list of tasks with their annotations) as answers: each task's newest
    submitted annotation (a skipped or cancelled one is no answer); `people` names annotators by user id."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [RejectedRow("file", f"not JSON: {exc.msg}")]
    if not isinstance(tasks, list):
        return [], [RejectedRow("file", "not a Label Studio export (a JSON list of tasks)")]
    answers, rejected = [], []
    for number, entry in enumerate(tasks, 1):
        where = f"task {entry.get('id', number) if isinstance(entry, dict) else number}"
        if not isinstance(entry, dict):
            rejected.append(RejectedRow(where, "not a task object"))
            continue
        item_id = _task_item(entry)
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, f"unknown review item {item_id!r}"))
            continue
        annotations = [a for a in entry.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            continue
        newest = max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))
        try:
            corrected = from_results(items[item_id], newest.get("result") or [])
        except ValueError as exc:
            rejected.append(RejectedRow(where, str(exc)))
            continue
        answers.append(ReviewAnswer(item_id, corrected, _annotator(newest, people or {}), where))
    return answers, rejected


def _task_item(entry: dict[str, Any]) -> int | None:
    for holder in (entry.get("data"), entry.get("meta")):
        if isinstance(holder, dict) and ITEM_KEY in holder:
            try:
                return int(holder[ITEM_KEY])
            except (TypeError, ValueError):
                return None
    return None


def _annotator(annotation: dict[str, Any], people: dict[int, str]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("username") or who.get("id") or "") or None
    if isinstance(who, int) and who in people:
        return people[who]
    return f"label-studio user {who}" if who is not None else None


# --- the HTTP client ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY: a personal access token (a JWT refresh token, exchanged for an
    access token) or a legacy token. The key stays out of its repr (LabelStudioSettings keeps it a SecretStr)."""

    url: str
    api_key: str = dataclasses.field(repr=False)


class LabelStudio:
    def __init__(self, connection: Connection, timeout_s: float = 60.0) -> None:
        import httpx

        self._http = httpx.Client(base_url=connection.url.rstrip("/"), timeout=timeout_s)
        self._http.headers["Authorization"] = self._authorization(connection.api_key)

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _authorization(self, api_key: str) -> str:
        if api_key.count(".") == 2:  # a JWT: a personal access token, exchanged for a short-lived access token
            response = self._call("POST", "/api/token/refresh", json={"refresh": api_key}, auth=False)
            return f"Bearer {response['access']}"
        return f"Token {api_key}"

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            detail = response.text[:300].strip()
            hint = " (check LABEL_STUDIO_API_KEY)" if response.status_code in (401, 403) else ""
            raise LabelStudioError(f"Label Studio answered {response.status_code} to {method} {path}{hint}: {detail}")
        return response.json() if response.content else None

    def create_project(self, title: str, config: str) -> int:
        project = self._call("POST", "/api/projects", json={"title": title, "label_config": config})
        return int(project["id"])

    def add_local_storage(self, project: int, path: str) -> None:
        """Let the project's tasks load files under `path` through Label Studio's local-files serving."""
        existing = self._call("GET", "/api/storages/localfiles", params={"project": project}) or []
        if any(s.get("path") == path for s in existing):
            return
        self._call(
            "POST",
            "/api/storages/localfiles",
            json={"project": project, "path": path, "use_blob_urls": False, "title": "docflow derived files"},
        )

    def add_task(self, project: int, body: dict[str, Any]) -> int:
        """One task with its predictions; returns the task id."""
        created = self._call(
            "POST", "/api/tasks", json={"project": project, "data": body["data"], "meta": body["meta"]}
        )
        task_id = int(created["id"])
        for prediction in body.get("predictions", []):
            self._call("POST", "/api/predictions", json={"task": task_id, **prediction})
        return task_id

    def export(self, project: int) -> str:
        """The project's tasks with their annotations, as Label Studio's JSON export."""
        import httpx

        try:
            response = self._http.get(f"/api/projects/{project}/export", params={"exportType": "JSON"})
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio answered {response.status_code} to the export: {response.text[:300]}")
        return response.text

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of a project (annotated or not)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self._call("GET", "/api/tasks", params={"project": project, "page": page, "page_size": 100})
            tasks = batch.get("tasks", []) if isinstance(batch, dict) else batch
            found += tasks
            if len(tasks) < 100:
                return found
            page += 1

    def people(self) -> dict[int, str]:
        """User id -> email, to name who annotated."""
        return {int(u["id"]): str(u.get("email") or u.get("username")) for u in self._call("GET", "/api/users") or []}
