"""Structured extraction: prompt from the schema, constrained generation, validation with bounded retries,
per-field confidence from token probabilities, and the rule that merges pages into one document."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from schemas.documents import SCHEMAS, DocumentSchema, ValueKind, field_kinds, printed_label, value_kind
from schemas.normalise import currencies_in, parse_date
from schemas.records import DocumentPage, Extraction, ReviewReason
from schemas.settings import ExtractionSettings
from tasks.extract.grounding import (
    Grounding,
    PageEvidence,
    amount_parts,
    business_name,
    decimal_comma,
    ground,
    has_legal_form,
    is_grounded,
    is_printed,
    labelled_date,
    payee_name,
    plain_text,
    printed_address,
    settled_total,
    web_name,
    whole_address,
)
from tasks.models.generation.base import Generation, GenerationRequest, StructuredGenerator
from tasks.models.generation.constrained import TokenScore, schema_json

# Long pages are cut: a small model's attention degrades long before its context ends, and prompts cost time.
MAX_PROMPT_CHARS = 4000
# The confidence of a field whose value the page does not print: the model's probability says nothing then.
UNGROUNDED_CONFIDENCE = 0.1


@dataclass
class PageOutcome:
    page_number: int
    data: dict[str, Any] | None = None
    errors: list[str] | None = None
    confidence: dict[str, float] | None = None
    raw: str = ""
    attempts: int = 0


def describe_fields(schema: type[DocumentSchema]) -> str:
    lines = []
    for name, field in schema.model_fields.items():
        lines.append(f"- {name}: {field.description or ''}")
    return "\n".join(lines)


def build_prompt(schema: type[DocumentSchema], page_text: str | None, retry: PageOutcome | None = None) -> str:
    # No worked example: a 135M model copies an example's values verbatim (measured), which is worse than none.
    parts = [
        f"Extract the data of {schema.description} as JSON with these fields:",
        describe_fields(schema),
        "Copy each value exactly as the document prints it; null when the document does not print it.",
    ]
    if page_text is not None:
        parts.append(f"Document:\n{page_text[:MAX_PROMPT_CHARS]}")
    else:
        parts.append("The document is the image above.")
    if retry is not None and retry.errors:
        parts.append(
            "Your previous answer was rejected:\n"
            + "\n".join(f"- {e}" for e in retry.errors[:10])
            + f"\nPrevious answer: {retry.raw[:1500]}\nAnswer again, fixing these problems."
        )
    parts.append("JSON:")
    return "\n\n".join(parts)


def validation_errors(schema: type[DocumentSchema], data: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in _validation_details(schema, data)
    ]


def _value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character spans of each top-level value in a JSON object text."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    index = text.find("{") + 1
    while 0 < index < len(text):
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "}":
            break
        try:
            key, index = decoder.raw_decode(text, index)
            index = text.index(":", index) + 1
            while text[index] in " \t\r\n":
                index += 1
            _, end = decoder.raw_decode(text, index)
        except (ValueError, IndexError):
            break
        spans[str(key)] = (index, end)
        index = end
    return spans


def field_confidences(tokens: list[TokenScore]) -> dict[str, float]:
    """Per top-level field: the geometric mean probability of the tokens that wrote its value."""
    text = "".join(t.text for t in tokens)
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token.text)))
        position += len(token.text)
    result = {}
    for field, (start, end) in _value_spans(text).items():
        logprobs = [
            t.logprob for t, (a, b) in zip(tokens, offsets, strict=True) if a < end and b > start and not t.forced
        ]
        if logprobs:
            result[field] = round(math.exp(sum(logprobs) / len(logprobs)), 4)
    return result


def _judge(schema: type[DocumentSchema], generation: Generation) -> tuple[dict[str, Any] | None, list[str]]:
    if not generation.finished:
        return None, ["the answer was cut off before the JSON was complete (max_new_tokens)"]
    try:
        data = json.loads(generation.text)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc}"]
    return data, validation_errors(schema, data)


@dataclass(frozen=True)
class DocumentPages:
    """The pages of one document to extract with one schema; `owner` names the document (an object id)."""

    owner: int
    schema: type[DocumentSchema]
    pages: tuple[DocumentPage, ...]


@dataclass(frozen=True)
class ForwardBatch:
    """One generate() call: the document each row belongs to, against the configured batch size."""

    owners: tuple[int, ...]
    capacity: int

    @property
    def fill(self) -> float:
        return len(self.owners) / self.capacity


@dataclass
class DocumentsExtraction:
    outcomes: dict[int, list[PageOutcome]]  # per owner, in page order
    batches: list[ForwardBatch]


def extract_pages(
    generator: StructuredGenerator, documents: Sequence[DocumentPages], config: ExtractionSettings
) -> DocumentsExtraction:
    """Extract every page of every document. Forward batches are filled across documents (a one-page receipt
    rides with the pages of an invoice), each row under its own document's grammar; pages whose answer fails
    validation are re-prompted with the errors, right after their batch."""
    grammars = {
        d.schema: schema_json(d.schema.model_json_schema(), config.max_string, config.max_items) for d in documents
    }
    work = [(d, page) for d in documents for page in d.pages[: config.max_pages]]
    outcomes = {(d.owner, page.page_number): PageOutcome(page.page_number) for d, page in work}
    batches: list[ForwardBatch] = []
    for first in range(0, len(work), config.batch_size):
        # A batch's failing pages are re-prompted right away: the engine still holds their documents in its cache.
        pending = work[first : first + config.batch_size]
        for _ in range(config.max_attempts):
            if not pending:
                break
            requests = []
            for document, page in pending:
                previous = outcomes[(document.owner, page.page_number)]
                prompt = build_prompt(
                    document.schema,
                    None if generator.reads_images else page.text,
                    previous if previous.attempts else None,
                )
                images = (page.path,) if generator.reads_images and page.path else ()
                requests.append(GenerationRequest(prompt, grammars[document.schema], images))
            generations = generator.generate(requests, config.max_new_tokens)
            batches.append(ForwardBatch(tuple(d.owner for d, _ in pending), config.batch_size))
            still_failing = []
            for (document, page), generation in zip(pending, generations, strict=True):
                outcome = outcomes[(document.owner, page.page_number)]
                outcome.attempts += 1
                outcome.raw = generation.text
                data, errors = _judge(document.schema, generation)
                outcome.errors = errors
                outcome.confidence = field_confidences(generation.tokens)
                outcome.data = data
                if errors:
                    still_failing.append((document, page))
            pending = still_failing
    by_owner: dict[int, list[PageOutcome]] = {d.owner: [] for d in documents}
    for document, page in work:
        by_owner[document.owner].append(outcomes[(document.owner, page.page_number)])
    return DocumentsExtraction(by_owner, batches)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def merge_pages(schema: type[DocumentSchema], outcomes: list[PageOutcome], backend: str, model_id: str) -> Extraction:
    """One document from its pages. The rule: a single value comes from the first page (in page order) whose
    answer has it; lists (line items, parties...) are concatenated in page order. Only pages whose answer parsed
    as JSON take part; the merged document is validated again (cross-field checks span pages)."""
    merged: dict[str, Any] = {}
    field_pages: dict[str, list[int]] = {}
    confidence: dict[str, float] = {}
    usable = [o for o in outcomes if o.data is not None]
    for name in schema.model_fields:
        for outcome in usable:
            value = outcome.data.get(name) if outcome.data else None
            if _is_empty(value):
                continue
            if isinstance(value, list):
                merged.setdefault(name, []).extend(value)
                field_pages.setdefault(name, []).append(outcome.page_number)
                conf = (outcome.confidence or {}).get(name)
                if conf is not None:
                    confidence[name] = min(confidence.get(name, 1.0), conf)
            elif name not in merged:
                merged[name] = value
                field_pages[name] = [outcome.page_number]
                if (conf := (outcome.confidence or {}).get(name)) is not None:
                    confidence[name] = conf
    errors = validation_errors(schema, merged) if usable else []
    unreadable: dict[str, str] = {}
    if errors:
        merged, unreadable = _unreadable_left_out(schema, merged)
        errors = validation_errors(schema, merged)
    if not usable:
        errors = [f"page {o.page_number}: {e}" for o in outcomes for e in (o.errors or [])] or ["no page answered"]
    data = schema.model_validate(merged).model_dump(mode="json") if usable and not errors else (merged or None)
    return Extraction(
        schema_id=schema.schema_id(),
        backend=backend,
        model_id=model_id,
        data=data,
        valid=not errors,
        attempts=max((o.attempts for o in outcomes), default=0),
        errors=tuple(errors) if errors else tuple(unreadable.values()),
        field_confidence=confidence,
        field_pages=field_pages,
        field_grounding=dict.fromkeys(unreadable, str(Grounding.UNREADABLE)),
        pages=tuple(o.page_number for o in outcomes),
        raw_output="\n".join(f"[page {o.page_number}] {o.raw}" for o in outcomes),
    )


def _unreadable_left_out(schema: type[DocumentSchema], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`data` without the single values that cannot be taken (a date '1950-05-98', an amount 'N/A', a name that
    is another field's value too, a repetition loop), and what was wrong with each, by field: one misread value
    sends its field to review, not the whole document. Errors in lists are left for the caller."""
    data, unreadable = dict(data), {}
    while problems := [
        (name, problem)
        for name, problem in _field_problems(_validation_details(schema, data))
        if isinstance(data.get(name), str | int | float)
    ]:
        for name, problem in problems:
            unreadable[name] = f"{name}: {data[name]!r} is not taken ({problem}); left empty"
            data[name] = None
    return data, unreadable


def _field_problems(errors: list[Any]) -> Iterator[tuple[str, str]]:
    """(top-level field, problem) of validation errors: a field's own error, or a document-level check that
    names the field its message is about ("customer_name: 'Acme' is the value of vendor_name too")."""
    for error in errors:
        if len(error["loc"]) == 1:
            yield str(error["loc"][0]), str(error["msg"])
        elif not error["loc"]:
            for problem in str(error["msg"]).removeprefix("Value error, ").split("; "):
                if match := re.match(r"(\w+): (.+)", problem):
                    yield match[1], match[2]


def _validation_details(schema: type[DocumentSchema], data: dict[str, Any]) -> list[Any]:
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors())
    return []


def with_grounding(extraction: Extraction, schema: type[DocumentSchema], page_texts: list[str]) -> Extraction:
    """The extraction with each value's grounding in the pages' text; a field holding a doubtful value (not
    printed, only part of what is printed, off its label, missing) gets at most UNGROUNDED_CONFIDENCE, whatever
    the model's own probability said."""
    if not extraction.valid or extraction.data is None:
        return extraction
    data, completed = _from_the_page(extraction.data, schema, page_texts)
    grounding = ground(schema.model_validate(data), page_texts)
    for name in completed:
        # The issuer's name the page settles (its payee, its domain's) may stand inside a longer printed line.
        taken = (Grounding.GROUNDED, Grounding.DERIVED) + ((Grounding.PARTIAL,) if name == schema.issuer_name else ())
        if grounding.get(name) in taken:
            grounding[name] = Grounding.COMPLETED
        else:  # the block is no better than the model's own value
            data[name] = extraction.data.get(name)  # the model may have left the field out altogether
            regrounded = ground(schema.model_validate(data), page_texts).get(name)
            if regrounded is None:  # an empty value the schema does not expect has no grounding
                grounding.pop(name, None)
            else:
                grounding[name] = regrounded
    for name, state in extraction.field_grounding.items():  # values left out as unreadable, not found on the page
        if state == Grounding.UNREADABLE and data.get(name) is None:
            grounding[name] = Grounding.UNREADABLE
    confidence = dict(extraction.field_confidence)
    for path, state in grounding.items():
        field = re.split(r"[.\[]", path, maxsplit=1)[0]
        if state.doubtful:
            confidence[field] = min(confidence.get(field, 1.0), UNGROUNDED_CONFIDENCE)
    update: dict[str, Any] = {
        "field_grounding": {p: str(s) for p, s in grounding.items()},
        "field_confidence": confidence,
    }
    if data != extraction.data:
        update["data"] = schema.model_validate(data).model_dump(mode="json")
    return extraction.model_copy(update=update)


def _from_the_page(
    data: dict[str, Any], schema: type[DocumentSchema], page_texts: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """`data` with what the page itself settles taken from it, and the fields so completed. The page's printed
    values are the candidates a small model should have chosen among:
    - a total other than the one the page settles (printed beside its total label, plus a rounding adjustment
      printed under it, and checked against the cash less the change: `settled_total`) becomes that amount (a
      small model takes the total before rounding, or the cash tendered);
    - a date other than the one printed beside the page's date label (or the only date it prints), read in the
      page's own day/month order, becomes that date (a small model rewrites 12-01-19 as it pleases);
    - an issuer's name that is not the registered name printed above its address (a trade name, a cashier's, a
      misreading) becomes that name;
    - an address that is only the start (or the middle) of a printed address block becomes the whole block (a
      small model copies its first row), one that is no address (a registration number, a date, the company's
      name) or none the page's first address block;
    - a currency the page does not print becomes the one currency it prints, or null when it prints none or
      several (a model guesses USD for any amount);
    - an amount the page does not print, on a page of decimal commas, becomes the thousandth of it the page
      prints (a model reads 56,02 as fifty-six thousand);
    - a subtotal and tax that do not add up to the total become the ones the page prints beside their labels
      when those do (`amount_parts`)."""
    data, completed = dict(data), []
    text = "\n".join(page_texts)
    evidence = PageEvidence.of(text)
    for name, field in schema.model_fields.items():
        value, kind, label = data.get(name), value_kind(field), printed_label(field)
        page_value = None
        if label is not None and kind is ValueKind.DATE:
            labelled_day = labelled_date(label, evidence)
            if labelled_day is not None and (value is None or parse_date(value) != labelled_day):
                page_value = labelled_day.isoformat()
        elif label is not None:
            total = settled_total(label, evidence)
            if total.value is not None and (value is None or Decimal(str(value)) != total.value):
                page_value = str(total.value)
        elif name == schema.issuer_name:
            page_value = _name_from_the_page(value, schema, evidence)
        elif kind is ValueKind.ADDRESS:
            page_value = _address_from_the_page(value, evidence)
        elif kind is ValueKind.AMOUNT and value is not None and not is_printed(value, kind, evidence):
            # On a page of decimal commas, "56,02" read as thousands: 56,020.00.
            thousandth = Decimal(str(value)) / 1000
            if decimal_comma(evidence) and thousandth in evidence.amounts:
                page_value = str(thousandth)
        elif kind is ValueKind.CURRENCY and value is not None and value not in (printed := currencies_in(text)):
            data[name] = page_value = next(iter(printed)) if len(printed) == 1 else None
        if page_value is not None:
            data[name] = page_value
            completed.append(name)
    if schema.amount_parts is not None:
        completed += _parts_from_the_page(data, schema.amount_parts, evidence)
    return data, completed


def _parts_from_the_page(data: dict[str, Any], fields: tuple[str, str, str], evidence: PageEvidence) -> list[str]:
    """Fill `data`'s subtotal and tax from the page's labelled amounts when the model's do not add up to the total
    (a small model copies one amount into both); the fields so completed."""
    total_name, *part_names = fields
    if data.get(total_name) is None:
        return []
    total = Decimal(str(data[total_name]))
    given = [data.get(name) for name in part_names]
    if None not in given and abs(sum(Decimal(str(v)) for v in given) - total) <= Decimal("0.02"):
        return []
    if (parts := amount_parts(total, evidence)) is None:
        return []
    completed = []
    for name, value, part in zip(part_names, given, parts, strict=True):
        if value is None or Decimal(str(value)) != part:
            data[name] = str(part)
            completed.append(name)
    return completed


def _name_from_the_page(value: Any, schema: type[DocumentSchema], evidence: PageEvidence) -> str | None:
    """The issuer's name as the page settles it, for an issuer's name that is not it. The holder of the account
    the page asks to be paid into settles it whatever the model said; the registered name printed above the
    address (a receipt's header) and the name the page's own web domain spells settle it, in the order the schema
    trusts them (`issuer_evidence`), for a value that is not a printed name with a legal form (a trade name, a
    person's, part of the name's row, a misreading, the customer's). None when the value stands."""
    found = payee_name(evidence)
    if found is None:
        if isinstance(value, str) and is_grounded(value, ValueKind.TEXT, evidence) and has_legal_form(value):
            return None
        readers = {"registered": business_name, "web": web_name}
        found = next((name for kind in schema.issuer_evidence if (name := readers[kind](evidence))), None)
        within = found is not None and isinstance(value, str) and plain_text(found) in plain_text(value)
        if within and is_printed(value, ValueKind.TEXT, evidence):
            return None  # the name and more of it as printed (a name over two rows, its legal form)
    if found is None or (isinstance(value, str) and plain_text(found) == plain_text(value)):
        return None
    return found


def _address_from_the_page(value: Any, evidence: PageEvidence) -> str | None:
    """The printed address block an address value should be, when it is not a whole printed address itself: the
    block it is the start or the middle of, else (a registration number, a date, the company's name, nothing)
    the page's own address block; None when the value stands or the page prints no address block."""
    if isinstance(value, str) and value.strip():
        if is_grounded(value, ValueKind.ADDRESS, evidence):
            return None
        if whole := whole_address(value, evidence):
            return whole
    return printed_address(evidence)


def _value_at(data: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+", path):
        data = data[int(part)] if isinstance(data, list) else data.get(part)
    return data


# What each doubtful grounding means, as a review reason: (code, what is wrong with the value).
_DOUBTS = {
    Grounding.UNGROUNDED: ("ungrounded_value", "is not printed on the document"),
    Grounding.PARTIAL: ("partial_value", "is not a whole printed name or address (cut short, or run on)"),
    Grounding.OFF_LABEL: ("off_label_value", "is not an amount the document prints beside a label for it"),
    Grounding.MISSING: ("missing_value", "is empty, but such documents always print it"),
    Grounding.UNREADABLE: ("unreadable_value", "was not taken"),
    Grounding.UNBALANCED: ("amounts_do_not_add_up", "disagrees with the amounts the page prints around it"),
}


def _grounding_reasons(
    extraction: Extraction, schema: type[DocumentSchema], config: ExtractionSettings
) -> list[ReviewReason]:
    kinds = field_kinds(schema)
    reasons = []
    for path, state in extraction.field_grounding.items():
        kind = kinds.get(re.sub(r"\[\d+\]", "", path))
        if state not in _DOUBTS or kind not in config.grounding_review:
            continue
        code, problem = _DOUBTS[Grounding(state)]
        if kind is ValueKind.FREE:
            problem = "uses letters the document never prints"
        value = _value_at(extraction.data, path)
        message = f"{path} {value!r} {problem}"
        if state == Grounding.UNREADABLE:  # what the model wrote, from the extraction's notes
            message = next((e for e in extraction.errors if e.startswith(f"{path}: ")), f"{path} {problem}")
        reasons.append(ReviewReason(stage="extract", code=code, message=message, value=str(value), field=path))
    return reasons


def review_reasons(extraction: Extraction, config: ExtractionSettings) -> list[ReviewReason]:
    """Why a person should check the extracted data (empty: it can be trusted). `invalid_extraction` carries the
    attempts made, `ungrounded_value`, `partial_value`, `off_label_value` and `missing_value` name each
    doubtful value (of the kinds DOCFLOW_EXTRACT_GROUNDING_REVIEW lists; see tasks/extract/grounding.py),
    `amounts_do_not_add_up` names the amount an identity (total = subtotal + tax) fails on,
    `low_confidence` carries the mean field confidence."""
    if not extraction.valid:
        return [
            ReviewReason(
                stage="extract",
                code="invalid_extraction",
                message=f"extraction not valid after {extraction.attempts} attempt(s): "
                + "; ".join(extraction.errors[:5]),
                value=extraction.attempts,
            )
        ]
    schema = SCHEMAS[extraction.schema_id.split("/")[0]]
    sums = [
        ReviewReason(stage="extract", code="amounts_do_not_add_up", message=message, value=None, field=field)
        for field, message in schema.model_validate(extraction.data).arithmetic_doubts()
    ]
    if doubts := _grounding_reasons(extraction, schema, config) + sums:
        return doubts
    if extraction.field_confidence and config.review_min_confidence > 0:
        mean = sum(extraction.field_confidence.values()) / len(extraction.field_confidence)
        if mean < config.review_min_confidence:
            return [
                ReviewReason(
                    stage="extract",
                    code="low_confidence",
                    message=f"low extraction confidence: mean field confidence {mean:.2f} "
                    f"< {config.review_min_confidence}",
                    value=mean,
                )
            ]
    return []
