"""Grounding on real pages: values checked against the text layer of real invoices and tesseract's reading of a
real receipt scan. The extracted values are hand-written inputs to the check, as a model might write them."""

from pathlib import Path
from typing import Any

import pytest

from schemas.documents import Invoice, Receipt
from schemas.records import Extraction
from schemas.settings import ExtractionSettings
from tasks.extraction import UNGROUNDED_CONFIDENCE, review_reasons, with_grounding
from tasks.grounding import Grounding, ground
from tasks.ocr import pdf_text_layer, tesseract_text


@pytest.fixture(scope="module")
def aws_page(corpus: Path) -> str:
    return pdf_text_layer(corpus / "pdf" / "invoice2data_AmazonWebServices.pdf", 1)[0]


@pytest.fixture(scope="module")
def netpresse_page(corpus: Path) -> str:
    return pdf_text_layer(corpus / "pdf" / "invoice2data_NetpresseInvoice.pdf", 1)[0]


@pytest.fixture(scope="module")
def receipt_ocr(corpus: Path) -> str:
    return tesseract_text(corpus / "extraction" / "inputs" / "sroie_001.jpg")


def _extraction(schema_id: str, data: dict[str, Any]) -> Extraction:
    return Extraction(schema_id=schema_id, backend="text", model_id="m", data=data, valid=True, attempts=1)


def test_values_printed_in_other_formats_are_grounded(aws_page: str, netpresse_page: str) -> None:
    # AWS prints "August 3 , 2014" and "$4.11"; the model writes ISO dates and plain numbers.
    aws = Invoice(
        vendor_name="Amazon Web Services",
        invoice_number="42183017",
        invoice_date="2014-08-03",
        currency="USD",
        total="4.11",
    )
    assert set(ground(aws, [aws_page]).values()) == {Grounding.GROUNDED}
    # Netpresse prints day-first dates and decimal commas: "28/11/2022", "Total TTC : 56,02 €".
    netpresse = Invoice(invoice_date="2022-11-28", subtotal="46.68", tax="9.34", total=56.02, currency="EUR")
    assert set(ground(netpresse, [netpresse_page]).values()) == {Grounding.GROUNDED}


def test_a_value_absent_from_the_page_goes_to_review_naming_the_field(aws_page: str) -> None:
    data = {"vendor_name": "Amazon Web Services", "invoice_number": "42183071", "total": "4.11"}  # digits swapped
    extraction = with_grounding(_extraction("invoice/v1", data), Invoice, [aws_page])
    assert extraction.field_grounding == {
        "vendor_name": "grounded",
        "invoice_number": "ungrounded",
        "total": "grounded",
    }
    assert extraction.field_confidence["invoice_number"] == UNGROUNDED_CONFIDENCE
    (reason,) = review_reasons(extraction, ExtractionSettings())
    assert (reason.stage, reason.code, reason.field, reason.value) == (
        "extract",
        "ungrounded_value",
        "invoice_number",
        "42183071",
    )
    assert "42183071" in reason.message and "not printed" in reason.message
    # Settings decide which kinds go to review: without identifiers, only the confidence says it.
    assert review_reasons(extraction, ExtractionSettings(grounding_review=["amount", "date"])) == []


def test_invented_dates_amounts_and_names_are_ungrounded(aws_page: str) -> None:
    invented = Invoice(
        vendor_name="Sai Yu Chung Trading", invoice_date="2014-08-04", total="4.12", customer_name="iViveLabs"
    )
    grounding = ground(invented, [aws_page])
    assert grounding == {
        "vendor_name": Grounding.UNGROUNDED,
        "customer_name": Grounding.GROUNDED,
        "invoice_date": Grounding.UNGROUNDED,
        "total": Grounding.UNGROUNDED,
    }


def test_line_item_values_are_grounded_one_by_one(aws_page: str) -> None:
    invoice = Invoice(
        line_items=[{"description": "Amazon Glacier", "amount": "2.22"}, {"description": "Amazon S3", "amount": 9}]
    )
    grounding = ground(invoice, [aws_page])
    assert grounding["line_items[0].description"] is Grounding.GROUNDED
    assert grounding["line_items[0].amount"] is Grounding.GROUNDED
    assert grounding["line_items[1].amount"] is Grounding.UNGROUNDED
    extraction = with_grounding(_extraction("invoice/v1", invoice.model_dump(mode="json")), Invoice, [aws_page])
    fields = {r.field for r in review_reasons(extraction, ExtractionSettings())}
    assert "line_items[1].amount" in fields


def test_a_computed_amount_is_derived_not_grounded(netpresse_page: str) -> None:
    # The same invoice without its VAT line: 9.34 is then not printed, but it is total minus subtotal.
    without_tax_line = "\n".join(line for line in netpresse_page.splitlines() if "TVA 20%" not in line)
    invoice = Invoice(subtotal="46.68", tax="9.34", total="56.02")
    assert ground(invoice, [without_tax_line])["tax"] is Grounding.DERIVED
    extraction = with_grounding(_extraction("invoice/v1", invoice.model_dump(mode="json")), Invoice, [without_tax_line])
    assert review_reasons(extraction, ExtractionSettings()) == []


def test_ocr_noise_is_tolerated_but_an_invented_merchant_is_not(receipt_ocr: str) -> None:
    # tesseract reads this scan's header as "INDAH GIFT & HOME BECO" and the street as "JALAN DEDAF".
    read = Receipt(
        merchant_name="INDAH GIFT & HOME DECO",
        merchant_address="27, JALAN DEDAP 13, TAMAN JOHOR JAYA, 81100 JOHOR BAHRU, JOHOR.",
        date="19/10/2018",
    )
    assert set(ground(read, [receipt_ocr]).values()) == {Grounding.GROUNDED}
    invented = Receipt(merchant_name="TESCO EXTRA", date="2018-10-20")
    assert set(ground(invented, [receipt_ocr]).values()) == {Grounding.UNGROUNDED}


def test_free_text_is_not_checked(aws_page: str) -> None:
    from schemas.documents import GenericDocument

    summary = GenericDocument(summary="An AWS bill for July 2014.")
    assert ground(summary, [aws_page]) == {"summary": Grounding.UNCHECKED}


def test_free_text_in_letters_the_page_never_prints_is_ungrounded(aws_page: str) -> None:
    from schemas.documents import GenericDocument

    # What the 0.5B model wrote for the AWS invoice scan in `make run`, before this check.
    drifted = GenericDocument(summary="This invoice is for the billing period July 1 - July 31, 2014 ... for您的")
    extraction = with_grounding(_extraction("generic/v1", drifted.model_dump(mode="json")), GenericDocument, [aws_page])
    assert extraction.field_grounding == {"summary": "ungrounded"}
    (reason,) = review_reasons(extraction, ExtractionSettings())
    assert reason.field == "summary"
