"""Grounding: is each extracted value printed on the document's pages?

A value the model read is on the page; a value it invented is not. Every string, amount, date and code of a
validated document is looked up in the page text (the PDF's text layer, else OCR), normalised the way documents
vary: case, spacing and punctuation for text (with a fuzzy margin for OCR noise), character for character for
identifiers, by value for amounts (thousands separators, decimal commas, currency signs), by calendar date for
dates in any printed format, by code, symbol or name for currencies. An amount that is not printed but equals
the sum or difference of two printed ones (a tax computed as total minus subtotal) is `derived`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import permutations
from typing import Any

from pydantic import BaseModel
from rapidfuzz import fuzz

from schemas.documents import DocumentSchema, ValueKind, value_kind
from schemas.normalise import MONTH_NAMES, currencies_in, parse_amount, parse_date

# Similarity (0-100) at or above which a text value counts as printed: OCR drops and confuses a few characters.
FUZZY_MATCH = 90
# Share of a long value's words that must be on the page when its words are spread over layout columns.
WORD_COVERAGE = 0.85

# A number standing on its own: not part of a code (E8318), a time (20:49), a date (19/10/2018) or a longer number.
_NUMBER = re.compile(r"(?<![\w.,/:])(?:\d[\d.,]*\d|\d)(?![\w/:]|[.,]\d)")
_MONTH = "(?:" + "|".join(sorted(MONTH_NAMES, key=len, reverse=True)) + r")\.?"
_SEP = r"[ \t\-/.,]*"  # within one line: a date never spans lines
_DATES = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"  # 2018-03-05
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"  # 05/03/2018, 5.3.18
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?{_SEP}{_MONTH}{_SEP}\d{{2,4}}"  # 5 March 2018, 05-MAR-18, 28 Jan 15
    rf"|\b{_MONTH}{_SEP}\d{{1,2}}(?:st|nd|rd|th)?{_SEP}\d{{2,4}}",  # March 5, 2018
    re.IGNORECASE,
)


class Grounding(StrEnum):
    GROUNDED = "grounded"  # printed on the page
    DERIVED = "derived"  # not printed, but the sum or difference of two printed amounts
    UNGROUNDED = "ungrounded"  # not found on the page: read wrong or invented
    UNCHECKED = "unchecked"  # free text the model writes (a summary): only its letters are checked


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def _compact(text: str) -> str:
    return re.sub(r"[^\w]+", "", text.casefold())


@dataclass(frozen=True)
class PageEvidence:
    """What the pages print, in the forms values are compared in."""

    plain: str
    compact: str
    letters: frozenset[str]
    words: frozenset[str]
    amounts: frozenset[Decimal]
    dates: frozenset[date]
    currencies: frozenset[str]

    @classmethod
    def of(cls, text: str) -> PageEvidence:
        amounts = set()
        for number in _NUMBER.findall(text):
            try:
                if (amount := parse_amount(number)) is not None:
                    amounts.add(amount)
            except ValueError:
                continue
        plain = _plain(text)
        return cls(
            plain,
            _compact(text),
            frozenset(c for c in text if c.isalpha()),
            frozenset(plain.split()),
            frozenset(amounts),
            _dates_in(text),
            currencies_in(text),
        )


def _dates_in(text: str) -> frozenset[date]:
    """Every date the text prints, under each reading its form allows: 05/03/18 is 5 March and 3 May, and
    "28 Jan 15" the 28th of January 2015 or the 15th of January 2028."""
    found = set()
    for match in _DATES.findall(text):
        candidates = [match]
        if m := re.fullmatch(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{2,4})", match):
            candidates.append(f"{m[3]}{m[2]}{m[1]}{m[2]}{m[4]}")
        elif len(numbers := re.findall(r"\d+", match)) == 2:
            month = re.search(r"[^\W\d_]+", match)
            candidates += [f"{numbers[1]} {month[0] if month else ''} {numbers[0]}"]
        for candidate in candidates:
            try:
                if (day := parse_date(candidate)) is not None:
                    found.add(day)
            except ValueError:
                continue
    return frozenset(found)


def _text_printed(value: str, evidence: PageEvidence) -> bool:
    plain = _plain(value)
    if not plain or plain in evidence.plain:
        return True
    if len(plain) >= 4 and fuzz.partial_ratio(plain, evidence.plain) >= FUZZY_MATCH:
        return True
    words = plain.split()
    return len(words) >= 3 and sum(w in evidence.words for w in words) / len(words) >= WORD_COVERAGE


def is_printed(value: Any, kind: ValueKind, evidence: PageEvidence) -> bool:
    """Whether one (validated) value of the given kind is printed in the evidence."""
    if kind is ValueKind.AMOUNT:
        return Decimal(str(value)) in evidence.amounts
    if kind is ValueKind.DATE:
        return (value if isinstance(value, date) else parse_date(value)) in evidence.dates
    if kind is ValueKind.CURRENCY:
        return str(value) in evidence.currencies
    if kind is ValueKind.IDENTIFIER:
        return bool(_compact(str(value))) and _compact(str(value)) in evidence.compact
    return _text_printed(str(value), evidence)


def _values(value: Any, kind: ValueKind, path: str) -> Iterator[tuple[str, Any, ValueKind]]:
    """(path, value, kind) of every non-empty leaf value of a validated document."""
    if value is None or value == "":
        return
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _values(getattr(value, name), value_kind(field), f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _values(item, kind, f"{path}[{index}]")
    else:
        yield path, value, kind


def ground(document: DocumentSchema, page_texts: list[str]) -> dict[str, Grounding]:
    """The grounding of every non-empty value of `document`, by path (`total`, `line_items[0].amount`)."""
    evidence = PageEvidence.of("\n".join(page_texts))
    result: dict[str, Grounding] = {}
    for path, value, kind in _values(document, ValueKind.TEXT, ""):
        if kind is ValueKind.FREE:
            # A summary is the model's own words, but not in letters the page never prints (a stray 您的 at the end
            # of an English summary is a model going off the rails, not a reading of the page).
            foreign = {c for c in str(value) if c.isalpha() and not c.isascii()} - set(evidence.letters)
            result[path] = Grounding.UNGROUNDED if foreign else Grounding.UNCHECKED
        else:
            result[path] = Grounding.GROUNDED if is_printed(value, kind, evidence) else Grounding.UNGROUNDED
    _mark_derived(document, result)
    return result


def _mark_derived(document: DocumentSchema, result: dict[str, Grounding]) -> None:
    printed = {
        name: Decimal(str(getattr(document, name)))
        for name, field in type(document).model_fields.items()
        if value_kind(field) is ValueKind.AMOUNT and result.get(name) is Grounding.GROUNDED
    }
    for name, state in list(result.items()):
        if state is not Grounding.UNGROUNDED or name not in type(document).model_fields:
            continue
        if value_kind(type(document).model_fields[name]) is not ValueKind.AMOUNT:
            continue
        value = Decimal(str(getattr(document, name)))
        if any(value in (a + b, a - b) for (_, a), (_, b) in permutations(printed.items(), 2)):
            result[name] = Grounding.DERIVED
