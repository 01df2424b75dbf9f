"""Grounding: is each extracted value printed on the document's pages?

A value the model read is on the page; a value it invented is not. Every string, amount, date and code of a
validated document is looked up in the page text (the PDF's text layer, else OCR), normalised the way documents
vary: case, spacing and punctuation for text (with a fuzzy margin for OCR noise), character for character for
identifiers, by value for amounts (thousands separators, decimal commas, currency signs), by calendar date for
dates in any printed format, by code, symbol or name for currencies. An amount that is not printed but equals
the sum or difference of two printed ones (a tax computed as total minus subtotal) is `derived`.

Printed is not always right: a name or address cut out of a longer printed line or block, or running on into the
next one, is `partial`; an amount that the page does not print beside the field's own label (a subtotal given as
the total, or a page whose label the OCR lost) is `off_label`; a field every such document prints, left empty, is
`missing`."""

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

from schemas.documents import DocumentSchema, PrintedLabel, ValueKind, printed_label, value_kind
from schemas.normalise import MONTH_NAMES, currencies_in, parse_amount, parse_date

# Similarity (0-100) at or above which a text value counts as printed: OCR drops and confuses a few characters.
FUZZY_MATCH = 90
# Share of a long value's words that must be on the page when its words are spread over layout columns.
WORD_COVERAGE = 0.85
# A text value is whole when it covers at least this share of the printed cells it was found in (label aside).
CELL_COVERAGE = 0.75
# Rows after an address in which a postcode shows that the address goes on.
ADDRESS_TAIL_ROWS = 2
# The longest address block completed from the page, in rows.
ADDRESS_MAX_ROWS = 5
# A row that starts an address: a house, lot, unit or floor number (a bare number may be a shop's name).
_ADDRESS_START = re.compile(r"(?:no\b|lot\b|unit\b|level\b|\d+(?:st|nd|rd|th)\b)", re.I)
# A row that starts an address block the model did not give: a house number and its comma ("109, SS21/1A,"), or
# a street, area, building or floor word (Malay, English, German, French, Italian, Spanish, Dutch).
_HOUSE_NUMBER = r"^\d{1,5}[A-Z]?(?:[-/]\d{1,5}[A-Z]?)*\s*,"
_ADDRESS_LINE = re.compile(
    _HOUSE_NUMBER
    + r"|\b(?:jalan|jln|lorong|lrg|taman|tmn|persiaran|kawasan|bandar|seksyen|bangunan|plaza|street|st|road|rd|avenue|"
    r"ave|boulevard|blvd|lane|drive|highway|square|building|bldg|block|blk|floor|level|lot|unit|suite|no|p\.?o\.? box|"
    r"strasse|straße|str|rue|avenida|calle|via|piazza|weg|laan|straat|plein|platz|gasse|allee)\b"
    r"|\b\d+(?:st|nd|rd|th)\b",
    re.I,
)

# A number standing on its own: not part of a code (E8318), a time (20:49), a date (19/10/2018) or a longer number.
_NUMBER = re.compile(r"(?<![\w.,/:])(?:\d[\d.,]*\d|\d)(?![\w/:%]|[.,]\d)")
_MONTH = "(?:" + "|".join(sorted(MONTH_NAMES, key=len, reverse=True)) + r")\.?"
_SEP = r"[ \t\-/.,]*"  # within one line: a date never spans lines
_DATES = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"  # 2018-03-05
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"  # 05/03/2018, 5.3.18
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?{_SEP}{_MONTH}{_SEP}\d{{2,4}}"  # 5 March 2018, 05-MAR-18, 28 Jan 15
    rf"|\b{_MONTH}{_SEP}\d{{1,2}}(?:st|nd|rd|th)?{_SEP}\d{{2,4}}",  # March 5, 2018
    re.IGNORECASE,
)


# A postcode: 4-6 digits on their own (not a phone number, amount or date), a UK or a Canadian postcode.
_POSTCODE = re.compile(
    r"(?<![\w.,:/-])\d{4,6}(?![\w.,:/-]| ?\d)|\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\b[A-Z]\d[A-Z] ?\d[A-Z]\d\b"
)
# Rows that print contact or registration numbers (seven digits in a row), or a title: not an address.
_NOT_ADDRESS = re.compile(
    r"\b(?:tel|fax|phone|hp|e-?mail|www|gst|sst|vat|reg|company|co|bill|cash|cashier|order|table|member|date|"
    r"time|welcome|thank)\b|tax|invoice|receipt|\d{7}",
    re.I,
)
# What is never part of an address: the rows above, a phone number with spaces (07-355 2616), a company
# registration number (801580-T), a company's name.
_NOT_AN_ADDRESS = re.compile(
    _NOT_ADDRESS.pattern
    + r"|\b\d{2,4}[- ]\d{3,4}[- ]?\d{3,4}\b|\b[A-Z]{0,3}\d{5,8}-[A-Z]\b"
    + r"|\b(?:sdn|bhd|s/b|ltd|inc|gmbh|llc|enterprise|trading)\b",
    re.I,
)
_TITLE_WORDS = frozenset({"invoice", "receipt", "tax", "statement", "simplified", "official", "bill", "order"})
# A label in front of a value in the same cell ("Bill to:", "Customer:").
_LABEL_PREFIX = re.compile(r"^[^\W\d][^:]{0,30}:")
# A rounding adjustment: under one unit, with its sign ("ROUNDING ADJ ....... -0.01").
_ROUNDING = re.compile(r"(-?)\s?(0[.]\d{1,2})(?!\d)")
_CELL_GAP = re.compile(r"\s{2,}|\t")  # layout columns: pdftotext -layout and the OCR rows set cells apart so


class Grounding(StrEnum):
    GROUNDED = "grounded"  # printed on the page
    DERIVED = "derived"  # not printed, but the sum or difference of two printed amounts
    UNGROUNDED = "ungrounded"  # not found on the page: read wrong or invented
    UNCHECKED = "unchecked"  # free text the model writes (a summary): only its letters are checked
    PARTIAL = "partial"  # printed, but not as a whole: part of a longer name or address, or running into the next
    OFF_LABEL = "off_label"  # printed, but not beside the page's label for the field (which prints another or none)
    MISSING = "missing"  # empty, though every such document prints it
    COMPLETED = "completed"  # taken from the page: the whole address block the model gave part of, the currency
    UNREADABLE = "unreadable"  # what the model wrote could not be taken (not a date, another field's value): empty
    UNBALANCED = "unbalanced"  # the page's own amounts disagree about it (the total against cash less change)

    @property
    def doubtful(self) -> bool:
        return self in (
            Grounding.UNGROUNDED,
            Grounding.PARTIAL,
            Grounding.OFF_LABEL,
            Grounding.MISSING,
            Grounding.UNREADABLE,
            Grounding.UNBALANCED,
        )


def plain_text(text: str) -> str:
    """Text as values are compared: case-folded, punctuation as spaces, whitespace collapsed."""
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
    rows: tuple[str, ...]
    cells: tuple[_Cell, ...]

    cell_text: str  # the cells' plain text, joined by single spaces

    @classmethod
    def of(cls, text: str) -> PageEvidence:
        plain = plain_text(text)
        rows = tuple(row for row in text.splitlines() if row.strip())
        cells = tuple(_cells(rows))
        return cls(
            plain,
            _compact(text),
            frozenset(c for c in text if c.isalpha()),
            frozenset(plain.split()),
            frozenset(_amounts_in(text)),
            _dates_in(text),
            currencies_in(text),
            rows,
            cells,
            " ".join(cell.plain for cell in cells),
        )


def _amounts_in(text: str) -> list[Decimal]:
    """The stand-alone numbers of `text`, in order, by value."""
    amounts = []
    for number in _NUMBER.findall(text):
        try:
            if (amount := parse_amount(number)) is not None:
                amounts.append(amount)
        except ValueError:
            continue
    return amounts


@dataclass(frozen=True)
class _Cell:
    """One layout cell of a row, in plain form, with where it starts in `PageEvidence.cell_text`."""

    row: int
    start: int
    plain: str
    label_length: int  # plain characters of a label in front of the value ("customer" of "Customer: Taylor")

    @property
    def end(self) -> int:
        return self.start + len(self.plain)


def _cells(rows: tuple[str, ...]) -> Iterator[_Cell]:
    start = 0
    for index, row in enumerate(rows):
        for raw in _CELL_GAP.split(row.strip()):
            if plain := plain_text(raw):
                label = _LABEL_PREFIX.match(raw)
                yield _Cell(index, start, plain, len(plain_text(label[0])) + 1 if label else 0)
                start += len(plain) + 1


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
    plain = plain_text(value)
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


def is_whole(value: str, kind: ValueKind, evidence: PageEvidence) -> bool:
    """Whether a printed text value is exactly what the page prints there: not a few words cut out of a longer
    cell ("SAM TRADING" of "SAM SAM TRADING CO"), not a name running on into the next line; for an address, not
    a first line whose next rows carry on, nor one running into the phone number printed under it. A value only
    found word by word (spread over columns) is given the benefit of the doubt."""
    if kind is ValueKind.ADDRESS and (_NOT_AN_ADDRESS.search(value) or _DATES.search(value)):
        return False  # a registration or phone number, a company's name or a date is not (all of) an address
    located = _located(value, evidence)
    if located is None:
        return True
    start, end, touched = located
    before = evidence.cell_text[touched[0].start + touched[0].label_length : start]
    after = evidence.cell_text[end : touched[-1].end]
    # Codes beside a name (a registration number) and a title ("Amazon Web Services Invoice") are not part of it.
    extra = sum(
        len(word)
        for word in f"{before} {after}".split()
        if word.isalpha() and len(word) > 1 and word not in _TITLE_WORDS
    )
    if extra >= 2 and (end - start) < CELL_COVERAGE * (end - start + extra):
        return False
    if kind is ValueKind.TEXT and any(c.row != touched[0].row and re.search(r"\d", c.plain) for c in touched):
        return False  # a name runs on into the lines under it that carry numbers (its address)
    if kind is ValueKind.ADDRESS:
        return not _address_goes_on(evidence.rows[touched[-1].row + 1 : touched[-1].row + 1 + ADDRESS_TAIL_ROWS])
    return True


def _located(value: str, evidence: PageEvidence) -> tuple[int, int, list[_Cell]] | None:
    """Where a text value is printed in the page's cells: its span in `cell_text` and the cells it touches; None
    when it is not found as one run of text (only word by word, or not at all)."""
    plain = plain_text(value)
    if not plain or not evidence.cells:
        return None
    alignment = fuzz.partial_ratio_alignment(plain, evidence.cell_text)
    if alignment is None or alignment.score < FUZZY_MATCH:
        return None
    start, end = alignment.dest_start, alignment.dest_end
    touched = [cell for cell in evidence.cells if cell.start < end and start < cell.end]
    return (start, end, touched) if touched else None


def whole_address(value: str, evidence: PageEvidence) -> str | None:
    """The whole printed address block that an address value is the start or the middle of: the value's own
    rows, the rows under them that carry on with it (a street, area, postcode, town or region) and a house, lot
    or floor number row just above, as the page prints them, up to the first phone, registration or tax number
    or date. None when the value is not found as printed, is already whole, or is no address at all (a company
    name, a registration or phone number, a date): those stay for review."""
    if _NOT_AN_ADDRESS.search(value) or _DATES.search(value) or (located := _located(value, evidence)) is None:
        return None
    start, _, touched = located
    rows = evidence.rows
    first, last = touched[0].row, touched[-1].row
    # The rest of the value's last row, then the rows under it while they carry on.
    words = re.findall(r"\w+", value)
    at = rows[last].casefold().rfind(words[-1].casefold()) if words else -1
    tail, goes_on = _address_part(rows[last][at + len(words[-1]) :] if at >= 0 else "")
    block = [value.strip(), tail]
    while goes_on and last + 1 < len(rows) and last - first < ADDRESS_MAX_ROWS - 1:
        part, goes_on = _address_part(rows[last + 1])
        if not part:
            break
        block.append(part)
        last += 1
    # A house, lot or floor number row just above, when the value starts its own row.
    if first > 0 and start == touched[0].start and _ADDRESS_START.match(rows[first - 1].strip()):
        above, whole_row = _address_part(rows[first - 1])
        if whole_row and above:
            block.insert(0, above)
    whole = " ".join(" ".join(_CELL_GAP.split(part)) for part in block if part)
    return whole if plain_text(whole) != plain_text(value) else None


def _address_part(row: str) -> tuple[str, bool]:
    """What of a row can belong to an address (the row up to a phone, fax, registration or tax number, a title or
    a date; '' when that leaves no words nor postcode), and whether the address can go on past the row."""
    row = row.strip()
    ends = [m.start() for pattern in (_NOT_AN_ADDRESS, _DATES) if (m := pattern.search(row))]
    part = row[: min(ends)].strip(" ,:;(") if ends else row
    label = re.search(r"\bno\.?$", part, re.I) or (part.endswith(":") and not re.search(r"\d", part))
    if label or not (re.search(r"[^\W\d_]{3}", part) or _POSTCODE.search(part) or re.match(_HOUSE_NUMBER, part)):
        part = ""  # nothing, or only the label of the number that follows ("ROC No.: 1072825-A", "Address:")
    return part.rstrip(" :"), not ends


# A business's legal form, which its registered name ends with or carries (Malay, English, German, French, Dutch...).
_LEGAL_FORM = re.compile(
    r"\b(?:sdn\.?\s*bhd|bhd|s/b|enterprises?|trading|ltd|limited|inc|corp(?:oration)?|llc|llp|plc|pte|pvt|gmbh|ag|"
    r"kg|sarl|sas|s\.?a\.?|b\.?v\.?|n\.?v\.?|s\.?r\.?l\.?|s\.?p\.?a\.?|oy|ab|co)\b\.?",
    re.I,
)
# What a business's name row never prints: contact or tax numbers, a document title.
_NOT_A_NAME = re.compile(r"\b(?:tel|fax|phone|e-?mail|www|gst|vat|invoice|receipt)\b|\d{7}", re.I)
# A registration number printed after a name on its row: "99 SPEED MART S/B 519537-X)", "(CO.REG :933109-X)".
_REGISTRATION = re.compile(r"[\s(]*(?:\(?(?:co\.?\s*)?reg\b[^)]*|\(?[A-Z]{0,3}\d{4,}-[A-Z]\b)\)?\s*$", re.I)


def has_legal_form(name: str) -> bool:
    """Whether a name carries a business's legal form (SDN BHD, LTD, GMBH...)."""
    return bool(_LEGAL_FORM.search(name))


def business_name(evidence: PageEvidence) -> str | None:
    """The registered name a page prints above its first address block: the nearest row above it that names a
    business by its legal form (SDN BHD, LTD, GMBH...), with the row above when the name runs over two (an open
    parenthesis, a trailing '&'), its registration number cut off. None when the page prints no such row: a
    shop's name without a legal form is the model's to read. A receipt prints its issuer's name, then its
    address; a trade name, a franchise line or a date may stand between them."""
    address = _first_address_block(evidence)
    if address is None:
        return None
    rows = [_REGISTRATION.sub("", row).strip(" (") for row in evidence.rows[: address[0]]]
    for index in range(len(rows) - 1, -1, -1):
        name = rows[index]
        if _LEGAL_FORM.search(name) and re.search(r"[^\W\d_]{2}", name) and not _NOT_A_NAME.search(name):
            first = index
            # A name begun on the row above: an open parenthesis, a trailing '&', or a row that starts with the
            # legal form itself ("AIK HUAT HARDWARE" / "ENTERPRISE (SETIA" / "ALAM) SDN BHD").
            while first > 0 and (
                name.count(")") > name.count("(") or re.search(r"[&(-]$", rows[first - 1]) or _LEGAL_FORM.match(name)
            ):
                first -= 1
                name = f"{rows[first]} {name}"
            return " ".join(name.split())
    return None


# The account a document asks to be paid into names its issuer ("Titulaire du compte : NETPRESSE").
_PAYEE = re.compile(
    r"(?:titulaire\s+du\s+compte|account\s+(?:name|holder)|beneficiary|payable\s+to|pay\s+to|kontoinhaber|"
    r"empf[aä]nger)\s*:?\s*([^\n]+?)(?:\s{2,}|$)",
    re.I | re.M,
)
# A web or mail domain the page prints (www.azure-interior.com, billing@free.fr), and domains that name no one.
_DOMAIN = re.compile(r"(?:www\.|https?://(?:www\.)?|@)([a-z0-9][a-z0-9-]{1,40})\.[a-z]{2,}", re.I)
_ANYONE_S_DOMAINS = frozenset({"example", "gmail", "yahoo", "hotmail", "outlook", "mail", "email", "web", "info"})


def payee_name(evidence: PageEvidence) -> str | None:
    """The name of the account the page asks to be paid into (its issuer), as printed; None when it names none."""
    for row in evidence.rows:
        if (match := _PAYEE.search(row)) and re.search(r"[^\W\d_]{2}", match[1]):
            return match[1].strip(" .,:;")
    return None


def web_name(evidence: PageEvidence) -> str | None:
    """The name the page prints that its own web or mail domain spells (Azure Interior for azure-interior.com,
    Free for free.fr), as printed, the domain the page names most often first; None when none is printed."""
    domains = [_compact(m[1]) for row in evidence.rows for m in _DOMAIN.finditer(row)]
    for domain in sorted(set(domains) - _ANYONE_S_DOMAINS, key=domains.count, reverse=True):
        for row in evidence.rows:
            words = re.findall(r"[^\W_][\w&'.-]*", _DOMAIN.sub(" ", row))
            for first in range(len(words)):
                for last in range(first + 1, min(first + 4, len(words)) + 1):
                    if _compact(" ".join(words[first:last])) == domain:
                        return " ".join(words[first:last])
    return None


def printed_address(evidence: PageEvidence) -> str | None:
    """The page's first address block: the first row that starts one (a house number, a street, area, building or
    floor word) and the rows under it that carry on, up to a phone, registration or tax number, a title or a date,
    as `whole_address` completes them; a block of a single row must print a postcode. None when the page prints
    no such block. A receipt or a letterhead prints its sender's address first."""
    block = _first_address_block(evidence)
    return block[1] if block else None


def _first_address_block(evidence: PageEvidence) -> tuple[int, str] | None:
    """(the row it starts on, its text) of the page's first address block (see `printed_address`)."""
    rows = evidence.rows
    for index, row in enumerate(rows):
        part, goes_on = _address_part(row)
        if not part or not _ADDRESS_LINE.search(part):
            continue
        block = [part]
        while goes_on and index + len(block) < len(rows) and len(block) < ADDRESS_MAX_ROWS:
            more, goes_on = _address_part(rows[index + len(block)])
            if not more:
                break
            block.append(more)
        if len(block) > 1 or _POSTCODE.search(part):
            return index, " ".join(" ".join(_CELL_GAP.split(line)) for line in block)
    return None


def _address_goes_on(rows: tuple[str, ...]) -> bool:
    """Whether the rows after an address value carry on with it (a street, town, postcode or region) before
    anything else a header prints (a phone number, a tax id, the document's title)."""
    for row in rows:
        if _NOT_ADDRESS.search(row):
            return False
        if re.search(r"[^\W\d_]{3}", row):
            return True
    return False


def decimal_comma(evidence: PageEvidence) -> bool:
    """Whether the page writes its amounts with a decimal comma (56,02 €; 1.234,56): more of its amounts end in
    a comma and two digits than in a point and two."""
    text = "\n".join(evidence.rows)
    return len(re.findall(r"\d,\d{2}(?![\d,.])", text)) > len(re.findall(r"\d\.\d{2}(?![\d,.])", text))


def labelled_amount(label: PrintedLabel, evidence: PageEvidence, rounded: bool = True) -> Decimal | None:
    """The amount the page prints beside the last row carrying `label` (on that row after the label, else on
    the next row), plus (when `rounded`) a rounding adjustment printed after it; None when no row carries one
    amount so labelled.
    A row with several different amounts (a tax summary: net, tax) says nothing about which is meant."""
    label_re, excluding = re.compile(label.label, re.I), re.compile(label.excluding or r"(?!)", re.I)
    found: Decimal | None = None
    after = len(evidence.rows)
    for index, row in enumerate(evidence.rows):
        match = label_re.search(row)
        if not match or excluding.search(row):
            continue
        amounts = set(_amounts_in(row[match.end() :]))
        if not amounts and index + 1 < len(evidence.rows):
            amounts = set(_amounts_in(evidence.rows[index + 1]))
        if len(amounts) == 1:
            found, after = amounts.pop(), index + 1
    if found is None or not rounded:
        return found
    return found + sum(_roundings(evidence.rows[after:]), Decimal(0))


# A numeric date: day and month in either order, then the year.
_NUMERIC_DATE = re.compile(r"(?<![\d/.-])(\d{1,2})([-/.])(\d{1,2})\2(\d{2,4})(?![\d/.-])")


def day_first(rows: tuple[str, ...]) -> bool:
    """Whether the page prints its numeric dates day first: yes unless one of them can only be month first (a
    second number over 12) and none can only be day first. A page whose dates fit both orders is read day first,
    as most of the world writes them."""
    orders = {
        int(m[1]) > 12 >= int(m[3]) or (False if int(m[3]) > 12 >= int(m[1]) else None)
        for row in rows
        for m in _NUMERIC_DATE.finditer(row)
    }
    return not (False in orders and True not in orders)


def _read_dates(text: str, day_first_order: bool) -> list[date]:
    """The dates `text` prints, numeric ones read in the page's order."""
    found = []
    for match in _DATES.finditer(text):
        printed = match[0]
        if (m := _NUMERIC_DATE.fullmatch(printed)) and not day_first_order and int(m[1]) <= 12:
            printed = f"{m[3]}{m[2]}{m[1]}{m[2]}{m[4]}"  # month first: swapped into the day-first form parse_date reads
        try:
            if (day := parse_date(printed)) is not None:
                found.append(day)
        except ValueError:
            continue
    return found


def labelled_date(label: PrintedLabel, evidence: PageEvidence) -> date | None:
    """The date printed on the first row carrying `label` (after the label, else on the next row); failing such a
    row, the one date the page prints. Numeric dates are read in the page's own order (`day_first`). None when no
    labelled row prints one date and the page prints several or none."""
    label_re, excluding = re.compile(label.label, re.I), re.compile(label.excluding or r"(?!)", re.I)
    order = day_first(evidence.rows)
    rows = evidence.rows
    for index, row in enumerate(rows):
        match = label_re.search(row)
        if not match or excluding.search(row):
            continue
        found = set(_read_dates(row[match.end() :], order))
        if not found and index + 1 < len(rows):
            found = set(_read_dates(rows[index + 1], order))
        if len(found) == 1:
            return found.pop()
    every = {day for row in rows for day in _read_dates(row, order)}
    return every.pop() if len(every) == 1 else None


# What a till prints around its total: what was handed over, what was given back, the total before tax, the tax.
_PAID = PrintedLabel(r"\bcash\b|\btender", excluding=r"change|cashier|\bcash\s*(?:bill|sales|refund)|refund")
_CHANGE = PrintedLabel(r"\bchange\b")
_SUBTOTAL = PrintedLabel(
    r"sub\s*-?\s*total|untaxed|net\s*amount|total\s*\(?(?:excl|ex\b|ht\b|net|before\s*tax|hors)|\bnetto\b|\bht\b",
    excluding=r"qty|quantity",
)
_TAX = PrintedLabel(
    r"\b(?:gst|tax|vat|sst|tva|mwst|ust|iva)\b",
    excluding=r"\b(?:id|no|number|reg|rate|summary|code|invoice|before|untaxed|intra|incl\w*|excl\w*|sales)\b"
    r"|#|n°|ttc|%\s*incl",
)


@dataclass(frozen=True)
class TotalReading:
    """The total a page settles, or why it cannot: `value` is the amount to take (None: none settled), `doubt`
    says which printed amounts disagree with each other."""

    value: Decimal | None
    doubt: str | None = None


def settled_total(label: PrintedLabel, evidence: PageEvidence) -> TotalReading:
    """The total the page prints beside its label (`labelled_amount`), checked against what a till prints around
    it: the cash handed over less the change given back, and the total before tax plus the tax and rounding.
    A labelled total that the cash and change contradict is replaced by their difference when the subtotal and tax
    agree with it (an OCR misreading of the total's row), else it is in doubt; a page whose total row is unread
    takes the cash less change when the page prints that amount or the subtotal and tax agree with it."""
    labelled = labelled_amount(label, evidence)
    labelled = labelled if labelled is not None and labelled > 0 else None  # a labelled zero is a misreading
    paid, change, subtotal, tax = (
        labelled_amount(printed, evidence, rounded=False) for printed in (_PAID, _CHANGE, _SUBTOTAL, _TAX)
    )
    tendered = paid - change if paid is not None and change is not None and paid > change else None
    summed = subtotal + tax + _rounding(evidence) if subtotal is not None and tax is not None else None
    if labelled is not None:
        if tendered is None or labelled in (tendered, summed):
            return TotalReading(labelled)
        if summed == tendered:
            return TotalReading(tendered)
        return TotalReading(None, f"the page's total {labelled} is not the cash {paid} less the change {change}")
    if tendered is not None and (tendered == summed or tendered in evidence.amounts):
        return TotalReading(tendered)
    if summed is not None and summed in evidence.amounts:
        return TotalReading(summed)
    return TotalReading(None)


def amount_parts(total: Decimal, evidence: PageEvidence) -> tuple[Decimal, Decimal] | None:
    """(subtotal, tax) as the page prints them beside their labels, when they add up to `total`: both printed,
    or one printed and the other the difference (a page printing the untaxed amount and the total, not the tax).
    None when the page's amounts do not settle them."""
    subtotal, tax = (labelled_amount(printed, evidence, rounded=False) for printed in (_SUBTOTAL, _TAX))
    subtotal = subtotal if subtotal is not None and 0 < subtotal <= total else None
    tax = tax if tax is not None and 0 <= tax < total else None  # an invoice number beside "TVA" is no tax
    if subtotal is not None and tax is not None:
        return (subtotal, tax) if abs(subtotal + tax - total) <= Decimal("0.02") else None
    if subtotal is not None:
        return subtotal, total - subtotal
    if tax is not None:
        return total - tax, tax
    return None


def _rounding(evidence: PageEvidence) -> Decimal:
    """The (first) rounding adjustment a page prints (0 when none)."""
    return next(iter(_roundings(evidence.rows)), Decimal(0))


def _roundings(rows: tuple[str, ...]) -> list[Decimal]:
    """The rounding adjustments the rows print ("ROUNDING ADJ ....... -0.01"), in order."""
    return [
        Decimal(adjustment[1] + adjustment[2])
        for row in rows
        if re.search(r"\bround", row, re.I) and (adjustment := _ROUNDING.search(row))
    ]


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
    """The grounding of every non-empty value of `document`, by path (`total`, `line_items[0].amount`), and of
    every empty field the schema expects."""
    evidence = PageEvidence.of("\n".join(page_texts))
    result: dict[str, Grounding] = {}
    for path, value, kind in _values(document, ValueKind.TEXT, ""):
        result[path] = _grounding(value, kind, evidence)
    _mark_derived(document, result)
    fields = type(document).model_fields
    for name, field in fields.items():
        label, value = printed_label(field), getattr(document, name)
        if label is None or result.get(name) not in (Grounding.GROUNDED, Grounding.DERIVED):
            continue
        if value_kind(field) is ValueKind.DATE:
            if (labelled := labelled_date(label, evidence)) is not None and labelled != value:
                result[name] = Grounding.OFF_LABEL
        elif (total := settled_total(label, evidence)).doubt is not None:
            result[name] = Grounding.UNBALANCED
        elif total.value != Decimal(str(value)):
            # No row labelled so with one amount is no confirmation either: the value stays unconfirmed.
            result[name] = Grounding.OFF_LABEL
    for name in type(document).expected:
        if getattr(document, name) in (None, ""):
            result[name] = Grounding.MISSING
    return result


def is_grounded(value: Any, kind: ValueKind, evidence: PageEvidence) -> bool:
    """Whether a value is printed on the page, and whole (see `is_whole`) for a text or address."""
    return _grounding(value, kind, evidence) is Grounding.GROUNDED


def _grounding(value: Any, kind: ValueKind, evidence: PageEvidence) -> Grounding:
    if kind is ValueKind.FREE:
        # A summary is the model's own words, but not in letters the page never prints (a stray 您的 at the end
        # of an English summary is a model going off the rails, not a reading of the page).
        foreign = {c for c in str(value) if c.isalpha() and not c.isascii()} - set(evidence.letters)
        return Grounding.UNGROUNDED if foreign else Grounding.UNCHECKED
    if not is_printed(value, kind, evidence):
        return Grounding.UNGROUNDED
    if kind in (ValueKind.TEXT, ValueKind.ADDRESS) and not is_whole(str(value), kind, evidence):
        return Grounding.PARTIAL
    return Grounding.GROUNDED


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
