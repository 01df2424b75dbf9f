"""Versioned document schemas. Field descriptions drive the prompt; normalisers accept what documents print;
cross-field checks turn inconsistent extractions into validation errors (which send an item to review)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.fields import FieldInfo

from schemas.degenerate import degenerate_values
from schemas.normalise import parse_amount, parse_currency, parse_date


class ValueKind(StrEnum):
    """How a value is checked against the page it came from (see tasks/extract/grounding.py): identifiers character for
    character, amounts by value, dates in any printed format, currency codes by code, symbol or name, text
    case-, spacing- and OCR-noise-tolerant; free text (a summary the model writes) is not checked."""

    IDENTIFIER = "identifier"
    AMOUNT = "amount"
    DATE = "date"
    CURRENCY = "currency"
    TEXT = "text"
    ADDRESS = "address"  # text that must be whole: every printed line of it, postcode included
    FREE = "free"


@dataclass(frozen=True)
class PrintedLabel:
    """How documents label a field's amount ("Total", "Amount due"): the value must be the amount printed beside
    the last row so labelled (plus a rounding printed after it), not another figure of the page. `excluding`
    matches labels that share the words but name other figures ("Sub total", "Total qty", "Total excl. tax")."""

    label: str
    excluding: str = ""


def _printed(max_length: int, pattern: str | None = None) -> WithJsonSchema:
    """What a model writes for a value: the string the document prints, nullable. The validators parse it; the
    shape and a short bound stop a model that keeps writing digits or wanders into the next line."""
    string: dict[str, object] = {"type": "string", "pattern": pattern} if pattern else {"type": "string"}
    string["maxLength"] = max_length
    return WithJsonSchema({"anyOf": [string, {"type": "null"}]})


# A printed amount: an optional sign or currency, digits (thousands set off by a comma, space or apostrophe), at
# most two decimals. Dots as thousands separators ("1.234,56") are left out on purpose: they let a model that means
# 60.31 keep writing "60.310,00"; such an amount comes back wrong, is not found on the page and goes to review.
_AMOUNT_SHAPE = r"^-?([A-Z]{1,3}|[$€£¥])? ?(\d{1,7}|\d{1,3}([,' ]\d{3}){1,3})([.,]\d{1,2})?$"
# A printed date: numeric (19/10/2018, 2018-10-19, 12.01.19) or with a month name (05 MAR 2018, August 3, 2014).
_DATE_SHAPE = (
    r"^(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}[ -]?[A-Za-z]{3,9}\.?[ -,]{0,2}\d{2,4}"
    r"|[A-Za-z]{3,9}\.? ?\d{1,2}(st|nd|rd|th)? ?, ?\d{4})$"
)

Amount = Annotated[Decimal | None, BeforeValidator(parse_amount), ValueKind.AMOUNT, _printed(24, _AMOUNT_SHAPE)]
Day = Annotated[date | None, BeforeValidator(parse_date), ValueKind.DATE, _printed(32, _DATE_SHAPE)]
Currency = Annotated[str | None, BeforeValidator(parse_currency), ValueKind.CURRENCY, _printed(12)]
Identifier = Annotated[str | None, ValueKind.IDENTIFIER, _printed(40)]
Address = Annotated[str | None, ValueKind.ADDRESS]
FreeText = Annotated[str | None, ValueKind.FREE]

# The amount a document finally asks for: printed beside "Total" (not a sub total, a count or a tax summary).
TOTAL_LABEL = PrintedLabel(
    label=r"\btotal\b|amount\s*due|balance\s*due|\bjumlah\b",
    excluding=r"\d\s?%|sub|qty|quantity|\bitems?\b|disc|saving|excl|\(ex\)|\bht\b|point|^(?!.*\bincl).*\b(?:gst|tax|vat)\b",
)

# The date a document is about, printed beside "Date" (not a due, delivery or order date, nor the one it expires).
DATE_LABEL = PrintedLabel(
    label=r"\bdated?\b|\bdate\s*of\s*issue\b|\btarikh\b|\bdatum\b|\bfecha\b",
    excluding=r"\bdue\b|expir|valid|\bstart|\bend\b|deliver|\border\b|\bprint|\bbirth|limit|payment|paiement",
)

# Two cents per line item, at least one cent: printed amounts are rounded line by line.
_ROUNDING = Decimal("0.02")


class DocumentSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int]
    description: ClassVar[str]
    # Fields every such document prints: a result without one is not trusted (the model missed it).
    expected: ClassVar[tuple[str, ...]] = ()
    # The field holding the name of the business that issued the document (a receipt's merchant, an invoice's
    # vendor): the name the page settles (the payee, the registered name above the address, the web domain's).
    issuer_name: ClassVar[str | None] = None
    # Which printed evidence of the issuer's name to trust, first first: the registered name above the first
    # address block (a receipt's header: an invoice's first address is often its customer's), the web domain's.
    issuer_evidence: ClassVar[tuple[Literal["registered", "web"], ...]] = ("registered", "web")
    # (total, subtotal, tax) fields such that total = subtotal + tax: the page's labelled parts fill them.
    amount_parts: ClassVar[tuple[str, str, str] | None] = None

    @classmethod
    def schema_id(cls) -> str:
        return f"{cls.schema_name}/v{cls.schema_version}"

    def arithmetic_doubts(self) -> list[tuple[str, str]]:
        """(field, what does not add up) for each arithmetic identity such a document usually meets and this one
        does not."""
        return []

    @model_validator(mode="after")
    def _not_degenerate(self) -> DocumentSchema:
        if problems := degenerate_values(self):
            raise ValueError("; ".join(problems))
        return self


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str | None = Field(default=None, description="What was sold, as printed on the line")
    quantity: Amount = Field(default=None, description="Number of units")
    unit_price: Amount = Field(default=None, description="Price of one unit")
    amount: Amount = Field(default=None, description="Line total")


class Invoice(DocumentSchema):
    schema_name: ClassVar[str] = "invoice"
    schema_version: ClassVar[int] = 1
    description: ClassVar[str] = "an invoice: a bill from a vendor to a customer"
    expected: ClassVar[tuple[str, ...]] = ("vendor_name", "invoice_number", "invoice_date", "total")
    amount_parts: ClassVar[tuple[str, str, str] | None] = ("total", "subtotal", "tax")
    issuer_name: ClassVar[str | None] = "vendor_name"
    issuer_evidence: ClassVar[tuple[Literal["registered", "web"], ...]] = ("web",)

    vendor_name: str | None = Field(default=None, description="Company that issued the invoice")
    customer_name: str | None = Field(default=None, description="Company or person billed")
    invoice_number: Identifier = Field(default=None, description="The invoice's identifier, as printed")
    invoice_date: Annotated[Day, DATE_LABEL] = Field(default=None, description="Date of issue")
    due_date: Day = Field(default=None, description="Payment due date")
    currency: Currency = Field(default=None, description="ISO 4217 code such as USD or EUR")
    subtotal: Amount = Field(default=None, description="Total before tax")
    tax: Amount = Field(default=None, description="Tax amount")
    total: Annotated[Amount, TOTAL_LABEL] = Field(default=None, description="Amount due, tax included")
    line_items: list[LineItem] = Field(default_factory=list, description="Billed lines, in order")

    def arithmetic_doubts(self) -> list[tuple[str, str]]:
        """(field, what does not add up) for each identity an invoice usually meets and this one does not: total =
        subtotal + tax, subtotal = the sum of the lines. Not a validation error: pages print discounts, shipping
        and rounding that break them, so a person checks the field while the rest of the document stands."""
        doubts = []
        if (
            self.subtotal is not None
            and self.tax is not None
            and self.total is not None
            and abs(self.subtotal + self.tax - self.total) > _ROUNDING
        ):
            doubts.append(("total", f"total {self.total} != subtotal {self.subtotal} + tax {self.tax}"))
        amounts = [item.amount for item in self.line_items if item.amount is not None]
        if self.subtotal is not None and amounts and len(amounts) == len(self.line_items):
            lines_sum = sum(amounts, Decimal(0))
            if abs(lines_sum - self.subtotal) > max(_ROUNDING, Decimal("0.01") * len(amounts)):
                doubts.append(("subtotal", f"line items sum to {lines_sum}, subtotal is {self.subtotal}"))
        return doubts


class ReceiptItem(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str | None = Field(default=None, description="Item as printed")
    amount: Amount = Field(default=None, description="Price paid for the item")


class Receipt(DocumentSchema):
    schema_name: ClassVar[str] = "receipt"
    schema_version: ClassVar[int] = 1
    description: ClassVar[str] = "a till receipt from a shop, restaurant or petrol station"
    expected: ClassVar[tuple[str, ...]] = ("merchant_name", "date", "total")
    issuer_name: ClassVar[str | None] = "merchant_name"

    merchant_name: str | None = Field(
        default=None, description="Business name of the shop or company that issued the receipt"
    )
    merchant_address: Address = Field(
        default=None, description="The shop's full address: every line of it (street, area, postcode, town)"
    )
    date: Annotated[Day, DATE_LABEL] = Field(default=None, description="Date of purchase")
    currency: Currency = Field(default=None, description="ISO 4217 code such as MYR or EUR")
    total: Annotated[Amount, TOTAL_LABEL] = Field(default=None, description="Final total paid (after any rounding)")
    items: list[ReceiptItem] = Field(default_factory=list, description="Purchased items")


class KeyValue(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str = Field(description="Label as printed")
    value: str = Field(description="Value as printed")


class GenericDocument(DocumentSchema):
    schema_name: ClassVar[str] = "generic"
    schema_version: ClassVar[int] = 1
    description: ClassVar[str] = "any document: form, letter, report"

    title: str | None = Field(default=None, description="Title or subject of the document")
    date: Day = Field(default=None, description="Main date")
    parties: list[str] = Field(default_factory=list, description="People or organisations named as parties")
    fields: list[KeyValue] = Field(default_factory=list, description="Labelled values, e.g. form fields")
    summary: FreeText = Field(default=None, description="One or two sentences on what the document is")


def value_kind(field: FieldInfo) -> ValueKind:
    """The kind a field's annotation declares (plain strings are text)."""
    return next((m for m in field.metadata if isinstance(m, ValueKind)), ValueKind.TEXT)


def printed_label(field: FieldInfo) -> PrintedLabel | None:
    return next((m for m in field.metadata if isinstance(m, PrintedLabel)), None)


def field_kinds(model: type[BaseModel], prefix: str = "") -> dict[str, ValueKind]:
    """The kind of every field of `model` and of the models nested in it, by path without list indices
    (`total`, `line_items.amount`)."""
    kinds = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        kinds[path] = value_kind(field)
        for arg in getattr(field.annotation, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                kinds |= field_kinds(arg, f"{path}.")
    return kinds


SCHEMAS: dict[str, type[DocumentSchema]] = {s.schema_name: s for s in (Invoice, Receipt, GenericDocument)}
