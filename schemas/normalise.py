"""Normalisers for what models write: dates, amounts and currencies in the many forms documents use."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january", "januar", "janvier"),
            ("feb", "february", "februar", "fevrier", "février"),
            ("mar", "march", "märz", "maerz", "mars"),
            ("apr", "april", "avril"),
            ("may", "mai"),
            ("jun", "june", "juni", "juin"),
            ("jul", "july", "juli", "juillet"),
            ("aug", "august", "août", "aout"),
            ("sep", "sept", "september", "septembre"),
            ("oct", "october", "oktober", "octobre"),
            ("nov", "november", "novembre"),
            ("dec", "december", "dezember", "décembre", "decembre"),
        ],
        start=1,
    )
    for name in names
}

MONTH_NAMES = frozenset(_MONTHS)

_CURRENCY_SYMBOLS = {
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "RM": "MYR",
    "CHF": "CHF",
    "₹": "INR",
    "R$": "BRL",
    "A$": "AUD",
    "C$": "CAD",
    "S$": "SGD",
}
ISO_CURRENCIES = frozenset(
    "USD EUR GBP JPY CHF CAD AUD NZD CNY HKD SGD MYR INR BRL MXN SEK NOK DKK PLN CZK HUF RUB TRY ZAR KRW TWD THB "
    "IDR PHP VND AED SAR ILS EGP NGN KES ARS CLP COP PEN".split()
)


def _year(value: int) -> int:
    return value + (2000 if value < 70 else 1900) if value < 100 else value


def parse_date(value: object) -> date | None:
    """ISO dates, day-first numeric dates (18/03/18, 03.08.2014), and dates with month names."""
    if value is None or isinstance(value, date):
        return value
    text = re.sub(r"\s+\d{1,2}:\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?$", "", str(value).strip().lower())  # a time after it
    if not text:
        return None
    if m := re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", text):
        return date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{2,4})", text):
        first, second, year = int(m[1]), int(m[2]), _year(int(m[3]))
        day, month = (second, first) if second > 12 >= first else (first, second)  # day first unless impossible
        return date(year, month, day)
    words = re.findall(r"[a-zäéû]+|\d+", text)
    numbers = [int(w) for w in words if w.isdigit()]
    months = [_MONTHS[w] for w in words if w in _MONTHS]
    if months and len(numbers) == 2:
        # "28 Jan 15", "05 MAR 2018", "August 3, 2014": the day comes before the year; "2018 Mar 05": the year first.
        day, year = (numbers[1], numbers[0]) if numbers[0] > 31 else (numbers[0], numbers[1])
        return date(_year(year), months[0], day)
    raise ValueError(f"not a date: {value!r}")


def parse_amount(value: object) -> Decimal | None:
    """'1,234.56', '1.234,56', '$4.11', 'EUR 56,02', '(12.00)' -> Decimal."""
    if value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    text = re.sub(r"[^\d,.\-()]", "", str(value))
    if not re.search(r"\d", text):
        if not str(value).strip():
            return None
        raise ValueError(f"not an amount: {value!r}")
    negative = (text.startswith("(") and text.endswith(")")) or text.startswith("-")
    text = text.strip("()-")
    if "," in text and "." in text:
        decimal_sep = "," if text.rfind(",") > text.rfind(".") else "."
    elif "," in text:
        decimal_sep = "," if len(text) - text.rfind(",") - 1 in (1, 2) else ""
    else:
        decimal_sep = "." if ("." in text and len(text) - text.rfind(".") - 1 != 3) or text.count(".") == 1 else ""
    thousands = {",", "."} - {decimal_sep}
    for sep in thousands:
        text = text.replace(sep, "")
    if decimal_sep == ",":
        text = text.replace(",", ".")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    return -amount if negative else amount


def parse_currency(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text in _CURRENCY_SYMBOLS:
        return _CURRENCY_SYMBOLS[text]
    code = text.upper()
    if code in ISO_CURRENCIES:
        return code
    for symbol, iso in _CURRENCY_SYMBOLS.items():
        if symbol in text:
            return iso
    raise ValueError(f"not a currency code: {value!r}")


_CURRENCY_NAMES = {
    "us dollar": "USD",
    "u s dollar": "USD",
    "euro": "EUR",
    "pound sterling": "GBP",
    "ringgit": "MYR",
    "yen": "JPY",
    "swiss franc": "CHF",
    "rupee": "INR",
}


def currencies_in(text: str) -> frozenset[str]:
    """The currencies a text prints: ISO codes as words, symbols ($, €, RM...) and names ("US dollars")."""
    found = {word for word in re.findall(r"\b[A-Z]{3}\b", text) if word in ISO_CURRENCIES}
    for symbol, iso in _CURRENCY_SYMBOLS.items():
        # Letter symbols only as words ("RM 12.00", not the RM of FORM); sign symbols anywhere.
        pattern = rf"(?<![A-Za-z]){re.escape(symbol)}(?![A-Za-z])" if symbol[0].isalpha() else re.escape(symbol)
        if re.search(pattern, text):
            found.add(iso)
    lowered = " ".join(re.findall(r"[a-z]+", text.lower()))
    found.update(iso for name, iso in _CURRENCY_NAMES.items() if name in lowered)
    return frozenset(found)
