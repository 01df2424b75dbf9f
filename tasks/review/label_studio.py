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
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel

from schemas.documents import SCHEMAS
from schemas.errors import ConfigError
from schemas.redaction import redact_urls, redacted_url
from schemas.review import TRANSCRIPT_SCHEMA, ReviewItemView, ReviewStage
from tasks.display import first_line
from tasks.review.answers import RejectedRow, ReviewAnswer
from tasks.review.items import model_value

ITEM_KEY = "docflow_item"  # the review item's id, in each task's data (always returned) and meta
COLUMN_SEPARATOR = " | "
CLEAR = "null"  # a field's only row: the field is emptied (as in the review CSV)
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
    rows = [
        '<View>\n  <Image name="page" value="$image" zoom="true"/>',
        f'  <Header value="A field left empty keeps the model\'s value; write {CLEAR} as its only row to clear it."/>',
    ]
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


def from_results(item: ReviewItemView, results: object) -> dict[str, Any]:
    """An annotation's results as the item's value (validated later, with the item's schema). A document field the
    annotation leaves out (or leaves empty) keeps the model's value, as an empty CSV correction does; `null` clears
    it. An annotation that answers nothing is refused (ValueError with the reason): it would wipe the model's work."""
    if not isinstance(results, list):
        raise ValueError("the annotation's result is not a list of answers")
    by_name: dict[str, dict[str, Any]] = {}
    for result in results:
        if (
            isinstance(result, dict)
            and isinstance(result.get("from_name"), str)
            and isinstance(result.get("value"), dict)
        ):
            by_name[result["from_name"]] = result["value"]
    if item.stage is ReviewStage.CLASSIFICATION:
        choices = by_name.get("label", {}).get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], str):
            raise ValueError("the annotation chose no class")
        return {"label": choices[0]}
    if item.stage is ReviewStage.TRANSCRIPTION:
        if "transcript" not in by_name:
            raise ValueError("the annotation has no transcript (an empty submission): nothing to store")
        segments = []
        for row in _rows("transcript", by_name["transcript"]):
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
    if not by_name.keys() & model.model_fields.keys():
        raise ValueError(
            "an empty annotation: it answers none of the fields (submit the fields as the model's prediction fills "
            "them in, corrected where wrong)"
        )
    predicted = model_value(item.stage, item.model_output) or {}
    value: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        rows = _rows(name, by_name[name]) if name in by_name else []
        columns = _columns(field.annotation)
        if not rows:  # not answered: the model's value stands
            value[name] = predicted[name] if name in predicted else field.get_default(call_default_factory=True)
        elif rows == [CLEAR]:
            value[name] = [] if _is_list(field.annotation) else None
        elif columns:
            value[name] = [_row_object(row, columns) for row in rows]
        elif _is_list(field.annotation):
            value[name] = [_cell_value(row) for row in rows]
        else:
            value[name] = _cell_value(rows[0])
    return value


def _rows(name: str, value: dict[str, Any]) -> list[str]:
    text = value.get("text")
    if text is None:
        return []
    if isinstance(text, str):
        text = [text]
    if not isinstance(text, list) or not all(isinstance(row, str) for row in text):
        raise ValueError(f"{name}: the answer's text is not a list of rows")
    return [line.strip() for row in text for line in row.splitlines() if line.strip()]


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
        except (ValueError, RecursionError):  # not JSON (or absurdly deep, or a huge integer): the text as typed
            return text
    return text or None


def read_export(
    text: str, items: dict[int, ReviewItemView], people: dict[int, str] | None = None
) -> tuple[list[ReviewAnswer], list[RejectedRow]]:
    """Label Studio's JSON export (a list of tasks with their annotations) as answers: each task's newest
    submitted annotation (a skipped or cancelled one is no answer); `people` names annotators by user id. Whatever
    the file holds, a task that cannot be read is rejected with the reason (the file as a whole when it is not a
    list of tasks), never an exception."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [RejectedRow("file", f"not JSON: {exc.msg}")]
    except (ValueError, RecursionError) as exc:  # a number past Python's digit limit, nesting past its stack
        reason = "nested too deeply" if isinstance(exc, RecursionError) else first_line(str(exc), 120)
        return [], [RejectedRow("file", f"not a readable JSON export: {reason}")]
    if not isinstance(tasks, list):
        return [], [RejectedRow("file", "not a Label Studio export (a JSON list of tasks)")]
    answers: list[ReviewAnswer] = []
    rejected: list[RejectedRow] = []
    answered: dict[int, str] = {}  # item id -> the task that answered it
    for number, entry in enumerate(tasks, 1):
        where = _task_where(entry, number)
        if not isinstance(entry, dict):
            rejected.append(RejectedRow(where, "not a task object"))
            continue
        item_id, problem = _task_item(entry)
        if item_id is None or item_id not in items:
            rejected.append(RejectedRow(where, problem or f"unknown review item {item_id}"))
            continue
        annotations = entry.get("annotations")
        if annotations is not None and not isinstance(annotations, list):
            rejected.append(RejectedRow(where, "its annotations are not a list"))
            continue
        submitted = [a for a in annotations or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not submitted:
            continue
        if item_id in answered:
            rejected.append(RejectedRow(where, f"item {item_id} is answered by {answered[item_id]} already"))
            continue
        newest = max(submitted, key=_annotation_order)
        try:
            corrected = from_results(items[item_id], newest.get("result"))
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            rejected.append(RejectedRow(where, f"item {item_id}: {reason}"))
            continue
        answered[item_id] = where
        answers.append(ReviewAnswer(item_id, corrected, _annotator(newest, people or {}), where))
    return answers, rejected


def _task_where(entry: object, number: int) -> str:
    """How a message names a task: its Label Studio id when it is one, else its place in the file."""
    task_id = entry.get("id") if isinstance(entry, dict) else None
    if _plain_id(task_id) is not None:
        return f"task {_plain_id(task_id)}"
    return f"task #{number} in the file"


def _plain_id(value: object) -> int | None:
    """An id written as an integer (or an integral number, or ASCII digits in a string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 2**63 else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < 2**63:
        return int(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= 19 and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _task_item(entry: dict[str, Any]) -> tuple[int | None, str | None]:
    """The review item a task answers, from its data (or meta), or None and why not."""
    for holder in (entry.get("data"), entry.get("meta")):
        if isinstance(holder, dict) and ITEM_KEY in holder:
            item_id = _plain_id(holder[ITEM_KEY])
            if item_id is None:
                return None, f"{ITEM_KEY} {_shown(holder[ITEM_KEY])} is not a review item id"
            return item_id, None
    return None, f"no {ITEM_KEY} in the task's data: not a task docflow pushed"


def _annotation_order(annotation: dict[str, Any]) -> tuple[str, int]:
    when = annotation.get("updated_at") or annotation.get("created_at")
    return (when if isinstance(when, str) else "", _plain_id(annotation.get("id")) or 0)


def _shown(value: object, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _annotator(annotation: dict[str, Any], people: dict[int, str]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        name = next((v for v in (who.get("email"), who.get("username")) if isinstance(v, str) and v.strip()), None)
        if name:
            return _name(name)
        who = who.get("id")
    who_id = _plain_id(who)
    if who_id is not None:
        return _name(people[who_id]) if who_id in people else f"label-studio user {who_id}"
    return None


def _name(text: str, limit: int = 200) -> str:
    return text.strip()[:limit]


# --- the HTTP client ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY: a personal access token (a JWT refresh token, exchanged for an
    access token) or a legacy token. The key stays out of its repr (LabelStudioSettings keeps it a SecretStr)."""

    url: str
    api_key: str = dataclasses.field(repr=False)


def checked_url(url: str) -> str:
    """LABEL_STUDIO_URL as the client uses it, or a ConfigError saying what is wrong (the password masked)."""
    parts = urlsplit(url.strip())
    shown = redacted_url(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"LABEL_STUDIO_URL {shown} is not an http(s) address: write e.g. http://127.0.0.1:8080")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"LABEL_STUDIO_URL {shown} has no valid port: write HOST:PORT with PORT 1 to 65535") from None
    if port == 0 or not parts.hostname:
        raise ConfigError(f"LABEL_STUDIO_URL {shown} has no valid host and port: e.g. http://127.0.0.1:8080")
    return url.strip().rstrip("/")


class LabelStudio:
    """Label Studio's HTTP API. Every fault (unreachable, refused, an answer that is not Label Studio's: an HTML
    page, JSON without the expected fields) is a LabelStudioError with a one-line reason, the URL's secrets
    masked."""

    def __init__(self, connection: Connection, timeout_s: float = 60.0) -> None:
        import httpx

        url = checked_url(connection.url)
        self._where = redacted_url(url)
        self._http = httpx.Client(base_url=url, timeout=timeout_s)
        try:
            self._http.headers["Authorization"] = self._authorization(connection.api_key)
        except BaseException:
            self._http.close()
            raise

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _authorization(self, api_key: str) -> str:
        if api_key.count(".") == 2:  # a JWT: a personal access token, exchanged for a short-lived access token
            response = self._call("POST", "/api/token/refresh", json={"refresh": api_key}, auth=False)
            access = response.get("access") if isinstance(response, dict) else None
            if not isinstance(access, str) or not access:
                raise LabelStudioError(self._unexpected("POST /api/token/refresh", "an access token", response))
            return f"Bearer {access}"
        return f"Token {api_key}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = redact_urls(first_line(str(exc), 200)) or type(exc).__name__
            raise LabelStudioError(f"cannot reach Label Studio at {self._where}: {reason}") from None
        if response.status_code >= 400:
            hint = " (check LABEL_STUDIO_API_KEY)" if response.status_code in (401, 403) else ""
            raise LabelStudioError(
                f"Label Studio at {self._where} answered {response.status_code} to {method} {path}{hint}: "
                f"{_describe(response)}"
            )
        return response

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise LabelStudioError(
                f"{self._where} answered {method} {path} with {_describe(response)}, not JSON: is LABEL_STUDIO_URL "
                "Label Studio's address?"
            ) from None

    def _unexpected(self, what: str, missing: str, answer: object) -> str:
        return (
            f"{self._where} answered {what} without {missing} ({_shown(answer, 80)}): is LABEL_STUDIO_URL Label "
            "Studio's address, and a version docflow knows (1.x)?"
        )

    def _id_of(self, answer: object, what: str) -> int:
        found = _plain_id(answer.get("id")) if isinstance(answer, dict) else None
        if found is None:
            raise LabelStudioError(self._unexpected(what, "an id", answer))
        return found

    def _list_of(self, answer: object, what: str, key: str | None = None) -> list[dict[str, Any]]:
        """A JSON list of objects (or the list under `key` of a paginated answer)."""
        if key is not None and isinstance(answer, dict):
            answer = answer.get(key)
        if answer is None:
            return []
        if not isinstance(answer, list) or not all(isinstance(entry, dict) for entry in answer):
            raise LabelStudioError(self._unexpected(what, "a list of objects", answer))
        return answer

    def create_project(self, title: str, config: str) -> int:
        project = self._call("POST", "/api/projects", json={"title": title, "label_config": config})
        return self._id_of(project, "POST /api/projects")

    def add_local_storage(self, project: int, path: str) -> None:
        """Let the project's tasks load files under `path` through Label Studio's local-files serving."""
        answer = self._call("GET", "/api/storages/localfiles", params={"project": project})
        existing = self._list_of(answer, "GET /api/storages/localfiles")
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
        task_id = self._id_of(created, "POST /api/tasks")
        for prediction in body.get("predictions", []):
            self._call("POST", "/api/predictions", json={"task": task_id, **prediction})
        return task_id

    def export(self, project: int) -> str:
        """The project's tasks with their annotations, as Label Studio's JSON export (a JSON list: an answer that
        is not one, an HTML page say, is a LabelStudioError)."""
        path = f"/api/projects/{project}/export"
        response = self._request("GET", path, params={"exportType": "JSON"})
        if not response.text.lstrip().startswith("["):
            raise LabelStudioError(
                f"{self._where} answered GET {path} with {_describe(response)}, not a JSON export (a list of tasks): "
                "is LABEL_STUDIO_URL Label Studio's address?"
            )
        return str(response.text)

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of a project (annotated or not)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self._call("GET", "/api/tasks", params={"project": project, "page": page, "page_size": 100})
            tasks = self._list_of(batch, "GET /api/tasks", "tasks" if isinstance(batch, dict) else None)
            found += tasks
            if len(tasks) < 100:
                return found
            page += 1

    def people(self) -> dict[int, str]:
        """User id -> email, to name who annotated (users the answer does not describe fully are left out: they
        are named by their id)."""
        answer = self._call("GET", "/api/users")
        users = self._list_of(answer, "GET /api/users", "results" if isinstance(answer, dict) else None)
        named = {}
        for user in users:
            user_id, name = _plain_id(user.get("id")), user.get("email") or user.get("username")
            if user_id is not None and isinstance(name, str) and name.strip():
                named[user_id] = _name(name)
        return named


def _describe(response: Any) -> str:
    """What an answer was, in a few words: its JSON or text (one line, shortened), or `an HTML page` (its title)."""
    text = response.text.strip()
    if "html" in response.headers.get("content-type", "") or text[:1] == "<":
        title = re.search(r"<title[^>]*>([^<]{1,120})</title>", text, re.IGNORECASE)
        return f"an HTML page ({title.group(1).strip()!r})" if title else "an HTML page"
    return redact_urls(first_line(text, 300)) if text else "an empty answer"
