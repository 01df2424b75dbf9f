"""Grounding on real pages: values checked against the text layer of real invoices and tesseract's reading of a
real receipt scan. The extracted values are hand-written inputs to the check, as a model might write them."""

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from schemas.documents import DATE_LABEL, Invoice, Receipt
from schemas.records import Extraction
from schemas.settings import ExtractionSettings
from tasks.extract.extraction import UNGROUNDED_CONFIDENCE, PageOutcome, merge_pages, review_reasons, with_grounding
from tasks.extract.grounding import Grounding, PageEvidence, day_first, ground, labelled_date, whole_address
from tasks.preprocess.ocr import rapidocr_text, tesseract_text
from tasks.preprocess.pdf import pdf_text_layer


@pytest.fixture(scope="module")
def aws_page(corpus: Path) -> str:
    return pdf_text_layer(corpus / "pdf" / "invoice2data_AmazonWebServices.pdf", 1)[0]


@pytest.fixture(scope="module")
def netpresse_page(corpus: Path) -> str:
    return pdf_text_layer(corpus / "pdf" / "invoice2data_NetpresseInvoice.pdf", 1)[0]


@pytest.fixture(scope="module")
def receipt_ocr(corpus: Path) -> str:
    return tesseract_text(corpus / "extraction" / "inputs" / "sroie_001.jpg")


def _present(grounding: dict[str, Grounding]) -> set[Grounding]:
    """The groundings of the values a document holds (not of expected fields left empty)."""
    return {state for state in grounding.values() if state is not Grounding.MISSING}


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
    assert _present(ground(netpresse, [netpresse_page])) == {Grounding.GROUNDED}


def test_a_value_absent_from_the_page_goes_to_review_naming_the_field(aws_page: str) -> None:
    data = {
        "vendor_name": "Amazon Web Services",
        "invoice_number": "42183071",  # digits swapped
        "invoice_date": "2014-08-03",
        "total": "4.11",
    }
    extraction = with_grounding(_extraction("invoice/v1", data), Invoice, [aws_page])
    assert {name: extraction.field_grounding[name] for name in data} == {
        "vendor_name": "grounded",
        "invoice_number": "ungrounded",
        "invoice_date": "grounded",
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
        vendor_name="Sai Yu Chung Trading",
        invoice_number="42183017",
        invoice_date="2014-08-04",
        total="4.12",
        customer_name="iViveLabs Limited",
    )
    grounding = ground(invented, [aws_page])
    assert grounding == {
        "vendor_name": Grounding.UNGROUNDED,
        "invoice_number": Grounding.GROUNDED,
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
    assert "tax" not in {reason.field for reason in review_reasons(extraction, ExtractionSettings())}


def test_ocr_noise_is_tolerated_but_an_invented_merchant_is_not(receipt_ocr: str) -> None:
    # tesseract reads this scan's header as "INDAH GIFT & HOME BECO" and the street as "JALAN DEDAF".
    read = Receipt(
        merchant_name="INDAH GIFT & HOME DECO",
        merchant_address="27, JALAN DEDAP 13, TAMAN JOHOR JAYA, 81100 JOHOR BAHRU, JOHOR.",
        date="19/10/2018",
    )
    assert _present(ground(read, [receipt_ocr])) == {Grounding.GROUNDED}
    invented = Receipt(merchant_name="TESCO EXTRA", date="2018-10-20")
    assert _present(ground(invented, [receipt_ocr])) == {Grounding.UNGROUNDED}


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


@pytest.fixture(scope="module")
def receipt_rows(corpus: Path) -> dict[str, str]:
    """RapidOCR's rows of six receipt scans: SAM SAM TRADING CO, TED HENG STATIONERY, PERNIAGAAN ZHENG HUI, INDAH
    GIFT & HOME DECO, C W KHOO HARDWARE and LIGHTROOM GALLERY. Read in float32, the reading these cases were written
    against (in bfloat16, 026's `CASH 153.35` reads `CASH /153.35`)."""
    inputs = corpus / "extraction" / "inputs"
    names = ("010", "026", "034", "001", "029", "016")
    return {name: rapidocr_text(inputs / f"sroie_{name}.jpg", "f32") for name in names}


def test_a_name_or_address_cut_short_is_partial(receipt_rows: dict[str, str]) -> None:
    # "SAM SAM TRADING CO", its address on two rows: "67,JLN MEWAH 25/63 TMN SRI MUDA," then "40400 SHAH ALAM."
    cut = Receipt(merchant_name="SAM TRADING", merchant_address="67,JLN MEWAH 25/63 TMN SRI MUDA")
    grounding = ground(cut, [receipt_rows["010"]])
    assert (grounding["merchant_name"], grounding["merchant_address"]) == (Grounding.PARTIAL, Grounding.PARTIAL)
    whole = Receipt(
        merchant_name="SAM SAM TRADING CO", merchant_address="67,JLN MEWAH 25/63 TMN SRI MUDA, 40400 SHAH ALAM"
    )
    grounding = ground(whole, [receipt_rows["010"]])
    assert (grounding["merchant_name"], grounding["merchant_address"]) == (Grounding.GROUNDED, Grounding.GROUNDED)
    # A registration number printed after a name is not part of it: "TED HENG STATIONERY & BOOKS (001451637-M)".
    assert ground(Receipt(merchant_name="TED HENG STATIONERY & BOOKS"), [receipt_rows["026"]])["merchant_name"] is (
        Grounding.GROUNDED
    )


def test_a_name_or_address_running_into_the_next_lines_is_partial(receipt_rows: dict[str, str]) -> None:
    # C W KHOO prints its address on two rows, then "Tel:03-89410243 Fax : 03-89410243".
    run_on = "NO.50, JALAN PBS 14/11, KAWASAN PERINDUSTRIAN BUKIT SERDANG, Tel:03-89410243 Fax : 03-89410243"
    assert ground(Receipt(merchant_address=run_on), [receipt_rows["029"]])["merchant_address"] is Grounding.PARTIAL
    whole = "NO.50, JALAN PBS 14/11, KAWASAN PERINDUSTRIAN BUKIT SERDANG,"
    assert ground(Receipt(merchant_address=whole), [receipt_rows["029"]])["merchant_address"] is Grounding.GROUNDED
    # LIGHTROOM's OCR puts the name and the address's first line on one row; a name running into the next rows
    # (with their numbers) is not a name.
    name_and_address = "LIGHTROOM GALLERY SDN BHD No: 28, JALAN ASTANA 1C, BANDAR BUKIT RAJA, 41050"
    assert ground(Receipt(merchant_name=name_and_address), [receipt_rows["016"]])["merchant_name"] is Grounding.PARTIAL


def test_an_amount_printed_under_another_label_is_off_label_and_the_labelled_one_is_taken(
    receipt_rows: dict[str, str],
) -> None:
    # ZHENG HUI prints "(Excluded GST) Sub Total (RM) : 313.50", "Total (RM) : 332.30" and a GST summary
    # "Total: 313.50 18.81" (net and tax: it says nothing about which is the total).
    subtotal_as_total = Receipt(merchant_name="PERNIAGAAN ZHENG HUI", date="09/03/2018", total="313.50")
    extraction = with_grounding(
        _extraction("receipt/v1", subtotal_as_total.model_dump(mode="json")), Receipt, [receipt_rows["034"]]
    )
    assert ground(Receipt.model_validate(subtotal_as_total), [receipt_rows["034"]])["total"] is Grounding.OFF_LABEL
    # The extraction takes the amount the page prints beside its total label instead.
    assert extraction.data is not None and extraction.data["total"] == "332.30"
    assert extraction.field_grounding["total"] == "completed"
    assert not [r for r in review_reasons(extraction, ExtractionSettings()) if r.field == "total"]
    assert ground(Receipt(total="332.30"), [receipt_rows["034"]])["total"] is Grounding.GROUNDED
    # INDAH GIFT prints "TOTAL AMT. RM 60.31", then "ROUNDING ADJ ... -0.01": the total paid is 60.30.
    assert ground(Receipt(total="60.31"), [receipt_rows["001"]])["total"] is Grounding.OFF_LABEL
    assert ground(Receipt(total="60.30"), [receipt_rows["001"]])["total"] is Grounding.GROUNDED
    # TED HENG's total row reads "TOTAL 12 FER:20iU" (a misreading): the cash 153.35 less the change 0.00 settles
    # it, as the subtotal 144.68, the tax 8.68 and the rounding -0.01 do.
    assert ground(Receipt(total="153.35"), [receipt_rows["026"]])["total"] is Grounding.GROUNDED
    extraction = with_grounding(_extraction("receipt/v1", {"total": "12"}), Receipt, [receipt_rows["026"]])
    assert extraction.data is not None and extraction.data["total"] == "153.35"


def test_a_total_the_page_s_own_amounts_contradict_goes_to_review_and_the_other_fields_stand(
    receipt_rows: dict[str, str], corpus: Path
) -> None:
    # Without its subtotal row, TED HENG's page says "TOTAL 12" and "CASH 153.35, CHANGE 0.00": nothing settles
    # which is right.
    page = "\n".join(row for row in receipt_rows["026"].splitlines() if "SUB-TOTAL" not in row)
    data = {"merchant_name": "TED HENG STATIONERY & BOOKS", "date": "2018-02-12", "total": "12"}
    extraction = with_grounding(_extraction("receipt/v1", data), Receipt, [page])
    assert extraction.data is not None and extraction.data["total"] == "12"
    assert extraction.field_grounding["total"] == "unbalanced"
    (reason,) = review_reasons(extraction, ExtractionSettings())
    assert (reason.code, reason.field) == ("amounts_do_not_add_up", "total")
    assert extraction.data["merchant_name"] == data["merchant_name"] and extraction.data["date"] == data["date"]
    # QualityHosting's invoice prints no subtotal or tax label to settle them: a subtotal and tax that do not add
    # up to its total send the total to review, the rest of the invoice stands.
    quality = "\n".join(pdf_text_layer(corpus / "pdf" / "invoice2data_QualityHosting.pdf", 2))
    data = {
        "vendor_name": "QualityHosting AG",
        "invoice_number": "30064443",
        "invoice_date": "2014-05-07",
        "total": "34.73",
    }
    extraction = with_grounding(
        _extraction("invoice/v1", {**data, "subtotal": "3.89", "tax": "3.89"}), Invoice, [quality]
    )
    assert extraction.valid and extraction.data is not None
    reasons = [(r.code, r.field) for r in review_reasons(extraction, ExtractionSettings())]
    assert ("amounts_do_not_add_up", "total") in reasons and ("invalid_extraction", None) not in reasons
    assert {name: extraction.data[name] for name in data} == data


def test_an_expected_field_left_empty_is_taken_from_the_page_or_goes_to_review(receipt_rows: dict[str, str]) -> None:
    no_total = Receipt(merchant_name="PERNIAGAAN ZHENG HUI", date="09/03/2018")
    extraction = with_grounding(
        _extraction("receipt/v1", no_total.model_dump(mode="json")), Receipt, [receipt_rows["034"]]
    )
    assert extraction.data is not None and extraction.data["total"] == "332.30"  # "Total (RM) : 332.30"
    header = "\n".join(receipt_rows["034"].splitlines()[:8])  # the page's header: no total printed
    extraction = with_grounding(_extraction("receipt/v1", no_total.model_dump(mode="json")), Receipt, [header])
    assert extraction.field_grounding["total"] == "missing"
    assert ("missing_value", "total") in [(r.code, r.field) for r in review_reasons(extraction, ExtractionSettings())]


@pytest.fixture(scope="module")
def receipt_pages(corpus: Path) -> dict[str, str]:
    """RapidOCR's reading (float32, as for `receipt_rows`) of real receipt scans whose addresses run over several
    printed rows."""
    names = ("sroie_005", "sroie_006", "sroie_010", "sroie_013", "sroie_023", "sroie_030")
    return {name: rapidocr_text(corpus / "extraction" / "inputs" / f"{name}.jpg", "f32") for name in names}


def test_an_address_cut_after_its_first_rows_becomes_its_whole_printed_block(receipt_pages: dict[str, str]) -> None:
    page = receipt_pages["sroie_023"]
    first_rows = "NO. 53, JALAN BESAR, 45600 BATANG BERJUNTAI"  # what the 0.5B model answered
    data = {"merchant_name": "TEO HENG STATIONERY & BOOKS", "merchant_address": first_rows}
    extraction = with_grounding(_extraction("receipt/v1", data), Receipt, [page])
    assert extraction.data is not None
    assert extraction.data["merchant_address"] == f"{first_rows} SELANGOR DARUL EHSAN"
    assert extraction.field_grounding["merchant_address"] == "completed"
    assert not [r for r in review_reasons(extraction, ExtractionSettings()) if r.field == "merchant_address"]


def test_a_completed_address_stops_at_the_phone_number_printed_after_it(receipt_pages: dict[str, str]) -> None:
    whole = whole_address("No.2&4, JALAN HARMONI 3/2, TAMAN DESA HARMONI", PageEvidence.of(receipt_pages["sroie_005"]))
    assert whole is not None and "81100 JOHOR BAHRU" in whole
    assert "07-355" not in whole and "2616" not in whole


@pytest.mark.parametrize(
    ("page", "value", "block"),
    [
        ("sroie_010", "(742016-W)", "67,JLN MEWAH 25/63 TMN SRI MUDA, 40400 SHAH ALAM."),  # the registration number
        ("sroie_030", "05 Mar 2018 18:24", "12, JALAN TAMPOI 7/4,KAWASAN PERINDUSTRIAN TAMPOI,81200 JOHOR BAHRU,JOHOR"),
        ("sroie_010", "SAM SAM TRADING CO", "67,JLN MEWAH 25/63 TMN SRI MUDA, 40400 SHAH ALAM."),  # the shop's name
        ("sroie_010", None, "67,JLN MEWAH 25/63 TMN SRI MUDA, 40400 SHAH ALAM."),  # no answer
    ],
)
def test_a_registration_number_a_date_or_a_name_is_refused_as_an_address_for_the_printed_block(
    receipt_pages: dict[str, str], page: str, value: str | None, block: str
) -> None:
    if value is not None:
        assert whole_address(value, PageEvidence.of(receipt_pages[page])) is None
    extraction = with_grounding(_extraction("receipt/v1", {"merchant_address": value}), Receipt, [receipt_pages[page]])
    assert extraction.data is not None
    assert _plain(extraction.data["merchant_address"]) == _plain(block)
    assert extraction.field_grounding["merchant_address"] == "completed"


def test_an_address_the_page_prints_whole_stands(receipt_pages: dict[str, str]) -> None:
    value = "67,JLN MEWAH 25/63 TMN SRI MUDA, 40400 SHAH ALAM."
    extraction = with_grounding(
        _extraction("receipt/v1", {"merchant_address": value}), Receipt, [receipt_pages["sroie_010"]]
    )
    assert extraction.data is not None and extraction.data["merchant_address"] == value
    assert extraction.field_grounding["merchant_address"] == "grounded"


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def test_a_currency_the_page_does_not_print_is_the_one_it_prints_or_none(
    netpresse_page: str, receipt_pages: dict[str, str]
) -> None:
    # Netpresse prints its amounts in euros; a small model answers USD for any amount.
    data = {"vendor_name": "NETPRESSE", "currency": "USD", "total": "56.02"}
    extraction = with_grounding(_extraction("invoice/v1", data), Invoice, [netpresse_page])
    assert extraction.data is not None and extraction.data["currency"] == "EUR"
    assert extraction.field_grounding["currency"] == "completed"
    # This receipt prints no currency at all (no RM, no code, no sign): no currency is better than a guess.
    guessed = {"merchant_name": "SOON HUAT MACHINERY ENTERPRISE", "currency": "MYR"}
    extraction = with_grounding(_extraction("receipt/v1", guessed), Receipt, [receipt_pages["sroie_006"]])
    assert extraction.data is not None and extraction.data["currency"] is None
    assert "currency" not in extraction.field_grounding


def test_a_total_labelled_zero_is_never_taken(receipt_pages: dict[str, str]) -> None:
    # The OCR reads this receipt's last total row as "Total Incl.68 GST RM  0.00": the model's 15.00 stands, for review.
    extraction = with_grounding(_extraction("receipt/v1", {"total": "15.00"}), Receipt, [receipt_pages["sroie_013"]])
    assert extraction.data is not None and extraction.data["total"] == "15.00"
    assert extraction.field_grounding["total"] == "off_label"


def test_a_decimal_comma_invoice_keeps_its_amounts_as_printed(netpresse_page: str) -> None:
    # Netpresse prints "Total HT : 46,68 €", "TVA 20% : 9,34 €", "Total TTC : 56,02 €"; the 0.5B model wrote the
    # total as 56,020.00 (the comma read as a thousands separator), and so can any amount.
    data = {"vendor_name": "NETPRESSE", "total": "56,020.00", "subtotal": "46,680.00", "tax": "9,34"}
    merged = merge_pages(Invoice, [PageOutcome(1, data=data, attempts=1)], "text", "m")
    extraction = with_grounding(merged, Invoice, [netpresse_page])
    assert extraction.data is not None
    assert (extraction.data["total"], extraction.data["subtotal"], extraction.data["tax"]) == ("56.02", "46.68", "9.34")
    assert {extraction.field_grounding[name] for name in ("total", "subtotal")} == {"completed"}
    assert not [r for r in review_reasons(extraction, ExtractionSettings()) if r.field in ("total", "subtotal", "tax")]


def test_a_date_in_words_is_read_and_a_reordered_one_taken_from_the_page(aws_page: str) -> None:
    # AWS prints "Invoice Date: August 3 , 2014"; a model that rewrites it month first is corrected from the page.
    data = {"vendor_name": "Amazon Web Services", "invoice_number": "42183017", "invoice_date": "2014-03-08"}
    extraction = with_grounding(_extraction("invoice/v1", data), Invoice, [aws_page])
    assert extraction.data is not None and extraction.data["invoice_date"] == "2014-08-03"
    assert extraction.field_grounding["invoice_date"] == "completed"


def test_the_day_and_month_order_is_the_page_s_own(corpus: Path) -> None:
    # HASSAN BISTRO prints "DATE :12/28/2017": month first, so its 12/28/2017 and any 01/02 on it read month first.
    month_first = rapidocr_text(corpus / "extraction" / "inputs" / "sroie_013.jpg")
    assert not day_first(PageEvidence.of(month_first).rows)
    assert labelled_date(DATE_LABEL, PageEvidence.of(month_first)) == date(2017, 12, 28)
    # MR D.I.Y. prints "12-01-19 21:13": either order fits, read day first as most of the world writes dates.
    ambiguous = rapidocr_text(corpus / "extraction" / "inputs" / "sroie_002.jpg")
    assert day_first(PageEvidence.of(ambiguous).rows)
    assert labelled_date(DATE_LABEL, PageEvidence.of(ambiguous)) == date(2019, 1, 12)
    assert labelled_date(DATE_LABEL, PageEvidence.of("Date: 01/02/2020\nPaid 03/13/2020")) == date(2020, 1, 2)


def test_a_field_the_model_left_out_stays_empty_when_the_page_block_is_no_better(sample_inbox: Path) -> None:
    # An invoice extracted as a receipt (a person corrected its class): the model's answer has no merchant_address
    # key at all, and the block the page offers for it is not the shop's address: the field stays empty.
    page = pdf_text_layer(sample_inbox / "documents" / "invoice2data_AzureInterior.pdf", 1)[0]
    for data in ({"merchant_name": "Azure Interior", "total": "279.84"}, {}):
        extraction = with_grounding(_extraction("receipt/v1", data), Receipt, [page])
        assert extraction.data is not None and extraction.data.get("merchant_address") is None
        assert "merchant_address" not in extraction.field_grounding
