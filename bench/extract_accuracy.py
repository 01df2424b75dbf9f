"""Extraction accuracy of the offline backend (text layer / tesseract + the text LLM) on the corpus invoices and
receipts that have ground truth, through docflow's own preprocessing, routing, constrained generation, validation
and retries. Prints a field-level table (exact match after normalisation), schema-valid rate, review rate and
seconds per page, then the key figures on the last line.

    .venv/bin/python bench/extract_accuracy.py [--corpus ../shared/corpus] [--model pkg:smollm2-135m]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.normalise import parse_amount, parse_currency, parse_date  # noqa: E402
from schemas.settings import load_settings  # noqa: E402
from tasks.stages.pipeline import process_local_file  # noqa: E402

INVOICE_FIELDS = {  # docflow field <- invoice2data expected-output key
    "vendor_name": "issuer",
    "invoice_number": "invoice_number",
    "invoice_date": "date",
    "due_date": "date_due",
    "currency": "currency",
    "subtotal": "amount_untaxed",
    "tax": "amount_tax",
    "total": "amount",
}
RECEIPT_FIELDS = {"merchant_name": "company", "merchant_address": "address", "date": "date", "total": "total"}


def cases(corpus: Path) -> list[tuple[Path, str, dict[str, Any]]]:
    """(input file, expected schema, {docflow field: expected value})."""
    out = []
    truth_dir = corpus / "ground_truth"
    for path in sorted((corpus / "pdf").glob("invoice2data_*.pdf")):
        truth = json.loads((truth_dir / "pdf" / f"{path.stem}.expected.json").read_text())[0]
        expected = {ours: truth[theirs] for ours, theirs in INVOICE_FIELDS.items() if theirs in truth}
        if "currency" not in expected and "currency_symbol" in truth:
            expected["currency"] = truth["currency_symbol"]
        out.append((path, "invoice", expected))
    png = corpus / "image" / "invoice2data_AmazonWebServices.png"  # the same invoice as a raster scan
    aws = json.loads((truth_dir / "pdf" / "invoice2data_AmazonWebServices.expected.json").read_text())[0]
    out.append((png, "invoice", {o: aws[t] for o, t in INVOICE_FIELDS.items() if t in aws}))
    for path in sorted((corpus / "image").glob("sroie_*.jpg")):
        truth = json.loads((truth_dir / "image" / f"{path.stem}.key.json").read_text())
        out.append((path, "receipt", {o: truth[t] for o, t in RECEIPT_FIELDS.items() if t in truth}))
    return out


def _text(value: Any) -> str:
    return re.sub(r"[\s.,;:]+", " ", str(value)).strip().casefold()


def same(field: str, expected: Any, got: Any) -> bool:
    """Exact match after normalisation: amounts as numbers, dates as dates, text case/space/punctuation-blind."""
    if got is None:
        return False
    try:
        if field in ("subtotal", "tax", "total"):
            return parse_amount(expected) == parse_amount(got)
        if field.endswith("date"):
            return parse_date(expected) == (got if isinstance(got, date) else parse_date(got))
        if field == "currency":
            return parse_currency(expected) == parse_currency(got)
    except (ValueError, ArithmeticError):
        return False
    return _text(expected) == _text(got)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--model", default="pkg:smollm2-135m")
    args = parser.parse_args()
    config = load_settings(text_llm_model=args.model, transcribe=False)

    from tasks.models.generators import load_generator
    from tasks.stages.extract import generator_spec

    load_generator(generator_spec(config.extraction, config.device, config.render.max_pixels))  # outside the timings
    per_field: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    valid = review = pages = routed = 0
    seconds = 0.0
    print(f"{'document':42s} {'schema':9s} {'valid':5s} {'status':6s} {'fields right':>12s} {'s':>6s}")
    documents = cases(args.corpus)
    for path, expected_schema, expected in documents:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            start = time.perf_counter()
            result = process_local_file(path, config, work)
            elapsed = time.perf_counter() - start
        extraction = result.extraction
        data = (extraction.data or {}) if extraction else {}
        schema = extraction.schema_id.split("/")[0] if extraction else "-"
        routed += schema == expected_schema
        right = 0
        for field, value in expected.items():
            ok = schema == expected_schema and same(field, value, data.get(field))
            per_field[f"{expected_schema}.{field}"][0] += ok
            per_field[f"{expected_schema}.{field}"][1] += 1
            right += ok
        valid += bool(extraction and extraction.valid)
        review += result.status.value == "review"
        pages += len(extraction.pages) if extraction else 0
        seconds += elapsed
        print(
            f"{path.name[:42]:42s} {schema:9s} {bool(extraction and extraction.valid)!s:5s} "
            f"{result.status.value:6s} {right:>5d} of {len(expected):<4d} {elapsed:6.1f}"
        )
    print(f"\n{'field':28s} {'right':>5s} {'of':>3s} {'accuracy':>8s}")
    total_right = total = 0
    for field in sorted(per_field):
        right, n = per_field[field]
        total_right += right
        total += n
        print(f"{field:28s} {right:5d} {n:3d} {right / n:8.2f}")
    n_docs = len(documents)
    print(f"{'ALL FIELDS':28s} {total_right:5d} {total:3d} {total_right / total:8.2f}")
    print(f"\nmodel {args.model}; {n_docs} documents, {pages} pages; routed to the right schema {routed}/{n_docs}")
    print(
        f"field_accuracy={total_right / total:.2f} valid_rate={valid / n_docs:.2f} review_rate={review / n_docs:.2f} "
        f"s_per_page={seconds / max(pages, 1):.1f} routing_accuracy={routed / n_docs:.2f}"
    )


if __name__ == "__main__":
    main()
