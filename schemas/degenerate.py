"""Degenerate model output: the ways a small or confused model fills a schema without reading the document.

Each check names the value and the pattern, so the re-prompt can tell the model what to fix and a reviewer what
went wrong. The checks are schema-level validation (see `DocumentSchema`), so a reviewer's correction passes the
same rules as the model's answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from rapidfuzz import fuzz

# A unit of two or more characters, a letter or digit among them, written four or more times in a row
# ("KongKongKongKong", "ab ab ab ab"); dot leaders ("ROUNDING ADJ..........") are print.
_LOOP = re.compile(r"(\S.*?\w.*?|\w.+?)(?:\s*\1){3,}", re.DOTALL)
# Near-duplicate list entries: the similarity (0-100, case- and spacing-blind) at or above which two are one.
NEAR_DUPLICATE = 92
# Rows of a list of objects (line items) repeated this often are padding, not purchases of the same thing.
REPEATED_ROWS = 3


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold().replace("_", " ")).split())


def repetition_loop(text: str) -> str | None:
    """The repeated unit when `text` loops, else None."""
    match = _LOOP.search(text)
    if match is None or len(match[0]) < 8:  # "1111" in an address or "..." is print, not a loop
        return None
    return match[1]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _strings(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _schema_words(model: type[BaseModel], out: set[str]) -> set[str]:
    """Every field description in `model` and the models nested in it, normalised."""
    for field in model.model_fields.values():
        if field.description:
            out.add(_plain(field.description))
        for arg in getattr(field.annotation, "__args__", ()) or (field.annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg is not model:
                _schema_words(arg, out)
    return out


def _own_field_name(path: str) -> str:
    return _plain(re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1])


def _duplicate_problem(path: str, items: list[Any]) -> str | None:
    if all(isinstance(item, str) for item in items):
        for i, first in enumerate(items):
            for second in items[i + 1 :]:
                if fuzz.ratio(_plain(first), _plain(second)) >= NEAR_DUPLICATE:
                    return f"{path}: list padded with near-duplicates ({first!r}, {second!r})"
        return None
    rows = [repr(item.model_dump()) if isinstance(item, BaseModel) else repr(item) for item in items]
    for row in set(rows):
        if rows.count(row) >= REPEATED_ROWS:
            return f"{path}: the same row repeated {rows.count(row)} times"
    return None


def degenerate_values(document: BaseModel) -> list[str]:
    """Problems of a validated document, one message per value: repetition loops, values that repeat a field's
    own name or any field's description instead of the document, lists padded with near-duplicates."""
    problems = []
    descriptions = _schema_words(type(document), set())
    for path, text in _strings(document, ""):
        plain = _plain(text)
        if (unit := repetition_loop(text)) is not None:
            problems.append(f"{path}: repetition loop ({unit!r} over and over)")
        elif plain and (plain in descriptions or plain == _own_field_name(path)):
            problems.append(f"{path}: {text!r} repeats the schema's wording, not the document")
    for name in type(document).model_fields:
        value = getattr(document, name)
        if isinstance(value, list) and len(value) > 1 and (problem := _duplicate_problem(name, value)):
            problems.append(problem)
    problems += _copied_between_fields(document)
    return problems


def _copied_between_fields(document: BaseModel) -> list[str]:
    """Two different top-level fields holding the same text (a merchant name given as the address too): one of
    them was filled from the wrong line."""
    seen: dict[str, str] = {}
    problems = []
    for name in type(document).model_fields:
        value = getattr(document, name)
        if not isinstance(value, str) or not (plain := _plain(value)):
            continue
        if plain in seen:
            problems.append(f"{name}: {value!r} is the value of {seen[plain]} too")
        seen.setdefault(plain, name)
    return problems
