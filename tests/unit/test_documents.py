from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.documents import SCHEMAS, GenericDocument, Invoice, Receipt
from schemas.normalise import parse_amount, parse_currency, parse_date


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234.56", "1234.56"),
        ("1.234,56", "1234.56"),
        ("56,02", "56.02"),
        ("$4.11", "4.11"),
        ("EUR 279.84", "279.84"),
        ("1,000", "1000"),
        ("86.00", "86.00"),
        ("(12.00)", "-12.00"),
        (4.5, "4.5"),
    ],
)
def test_amounts(text: object, expected: str) -> None:
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-08-03", date(2014, 8, 3)),
        ("18/03/18", date(2018, 3, 18)),
        ("08-03-17", date(2017, 3, 8)),
        ("Aug 3, 2014", date(2014, 8, 3)),
        ("3 August 2014", date(2014, 8, 3)),
        ("03.08.2014", date(2014, 8, 3)),
        ("12/31/2020", date(2020, 12, 31)),
        ("28 novembre 2022", date(2022, 11, 28)),
    ],
)
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


def test_currency_codes_and_symbols() -> None:
    assert [parse_currency(x) for x in ("usd", "€", "RM", "EUR")] == ["USD", "EUR", "MYR", "EUR"]
    with pytest.raises(ValueError):
        parse_currency("dollars-ish")


def test_invoice_normalises_what_documents_print() -> None:
    inv = Invoice(
        invoice_number="INV/2023/03/0008",
        invoice_date="20/03/2023",
        currency="$",
        subtotal="262,90",
        tax="16.94",
        total="$279.84",
        line_items=[{"description": "Chair", "amount": "70.00"}, {"amount": "192.90"}],
    )
    assert (inv.invoice_date, inv.currency, inv.total) == (date(2023, 3, 20), "USD", Decimal("279.84"))


def test_amounts_that_do_not_add_up_are_doubts_on_their_field_not_validation_errors() -> None:
    # Pages print discounts, shipping and rounding: an invoice whose sums fail is still an invoice.
    assert Invoice(subtotal="10", tax="2", total="13").arithmetic_doubts() == [
        ("total", "total 13 != subtotal 10 + tax 2")
    ]
    lines = Invoice(subtotal="10", line_items=[{"amount": "2"}, {"amount": "3"}])
    assert lines.arithmetic_doubts() == [("subtotal", "line items sum to 5, subtotal is 10")]
    assert Invoice(subtotal="10.00", tax="1.90", total="11.91").arithmetic_doubts() == []  # rounding tolerated


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Receipt(merchant_name="x", tip="3")  # type: ignore[call-arg]  # the unknown field is the point


def test_schema_registry_and_versions() -> None:
    assert {k: v.schema_id() for k, v in SCHEMAS.items()} == {
        "invoice": "invoice/v1",
        "receipt": "receipt/v1",
        "generic": "generic/v1",
    }
    assert GenericDocument(fields=[{"key": "Name", "value": "Ada"}]).fields[0].value == "Ada"
