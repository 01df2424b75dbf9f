"""Extraction accuracy on labelled real documents: the 40 SROIE receipts and 2 invoice2data invoices of
../shared/corpus/extraction/ plus the corpus's own labelled invoice2data invoices (5 PDFs and the AWS invoice as a
PNG scan), through docflow's whole per-object pipeline (preprocessing, classification and routing, OCR,
constrained generation, validation and re-prompts, grounding, review rules).

Scoring follows ../shared/corpus/extraction/README.md: amounts rounded to cents, dates as ISO dates, codes exact
after trimming and upper-casing, names and addresses fuzzy (case-folded, punctuation stripped, whitespace
collapsed, rapidfuzz ratio >= 80). A field in the truth that the prediction lacks is wrong. `done_wrong` is the
share of objects that ended `done` with at least one scored field wrong: what a user would trust and should not.

    .venv/bin/python bench/extract_accuracy.py [--model pkg:qwen2.5-coder-0.5b] [--engine llama.cpp|transformers]
        [--ocr rapidocr|tesseract] [--limit N] [--window N] [--route] [--corpus ../shared/corpus]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rapidfuzz import fuzz  # noqa: E402

from bench.local import process_local_files  # noqa: E402
from schemas.normalise import parse_amount, parse_currency, parse_date  # noqa: E402
from schemas.records import ObjectResult  # noqa: E402
from schemas.settings import Settings, load_settings  # noqa: E402

FUZZY_THRESHOLD = 80
AMOUNTS = {"total", "subtotal", "tax"}
DATES = {"invoice_date", "date"}
CODES = {"invoice_number", "currency"}
NAMES = {"vendor_name", "merchant_name", "merchant_address"}


@dataclass(frozen=True)
class Case:
    path: Path
    schema: str
    fields: dict[str, Any]


def _invoice2data_fields(label: dict[str, Any]) -> dict[str, Any]:
    """The extraction set's mapping (README there): issuer, invoice_number, date, currency, amount, amount_untaxed,
    and tax as amount minus amount_untaxed."""
    fields = {
        "vendor_name": label.get("issuer"),
        "invoice_number": label.get("invoice_number"),
        "invoice_date": label.get("date"),
        "currency": label.get("currency"),
        "total": label.get("amount"),
        "subtotal": label.get("amount_untaxed"),
    }
    if label.get("amount") is not None and label.get("amount_untaxed") is not None:
        fields["tax"] = round(float(label["amount"]) - float(label["amount_untaxed"]), 2)
    return {k: v for k, v in fields.items() if v is not None}


def cases(corpus: Path) -> list[Case]:
    extraction = corpus / "extraction"
    out = []
    for line in (extraction / "truth.jsonl").read_text().splitlines():
        record = json.loads(line)
        fields = {
            k: v for k, v in record["fields"].items() if k != "date_raw"
        }  # date is scored, date_raw is its source
        out.append(Case(extraction / record["file"], record["schema"], fields))
    truth = corpus / "ground_truth" / "pdf"
    for path in sorted((corpus / "pdf").glob("invoice2data_*.pdf")):
        out.append(
            Case(
                path, "invoice", _invoice2data_fields(json.loads((truth / f"{path.stem}.expected.json").read_text())[0])
            )
        )
    png = corpus / "image" / "invoice2data_AmazonWebServices.png"  # the same invoice as a raster scan
    aws = json.loads((truth / "invoice2data_AmazonWebServices.expected.json").read_text())[0]
    out.append(Case(png, "invoice", _invoice2data_fields(aws)))
    return out


def _plain(text: Any) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).casefold()).split())


def same(field: str, expected: Any, got: Any) -> bool:
    if got is None or got == "":
        return False
    try:
        if field in AMOUNTS:
            return round(parse_amount(expected), 2) == round(parse_amount(got), 2)  # type: ignore[arg-type]
        if field in DATES:
            return parse_date(expected) == parse_date(got)
        if field == "currency":
            return parse_currency(expected) == parse_currency(got)
    except (ValueError, ArithmeticError, TypeError):
        return False
    if field in CODES:
        return str(expected).strip().upper() == str(got).strip().upper()
    return fuzz.ratio(_plain(expected), _plain(got)) >= FUZZY_THRESHOLD


def _processed(
    documents: list[Case], configs: dict[str, Settings], window: int
) -> Iterator[tuple[Case, ObjectResult, float]]:
    """Each document with its result and its share of its window's time: documents go through the stages in
    windows of one schema, as a run carries them (generation batched across the window's documents)."""
    for schema in dict.fromkeys(c.schema for c in documents):
        same_schema = [c for c in documents if c.schema == schema]
        for first in range(0, len(same_schema), window):
            cases_ = same_schema[first : first + window]
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                results = process_local_files([c.path for c in cases_], configs[schema], Path(tmp))
                share = (time.perf_counter() - start) / len(cases_)
            yield from ((case, result, share) for case, result in zip(cases_, results, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--model", default=None, help="DOCFLOW_TEXT_LLM_MODEL (default: the setting's default)")
    parser.add_argument("--engine", default=None, choices=["transformers", "llama.cpp"], help="DOCFLOW_TEXT_LLM_ENGINE")
    parser.add_argument("--ocr", default=None, choices=["rapidocr", "tesseract"], help="DOCFLOW_OCR_ENGINE")
    parser.add_argument("--limit", type=int, default=None, help="only the first N receipts and N invoices")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="documents carried through the stages together (default: the "
        "DOCFLOW_WINDOW_SIZE setting; 1: one document at a time, no batching across documents)",
    )
    parser.add_argument("--jsonl", type=Path, default=None, help="write each object's prediction here")
    parser.add_argument(
        "--route",
        action="store_true",
        help="let the pipeline route each document (the image classifier joined with the page's words) instead of "
        "extracting it with its labelled schema (DOCFLOW_EXTRACT_SCHEMA): measures routing and extraction together",
    )
    args = parser.parse_args()
    overrides: dict[str, Any] = {"transcribe": False}
    if args.model:
        overrides["text_llm_model"] = args.model
    if args.ocr:
        overrides["ocr_engine"] = args.ocr
    if args.engine:
        overrides["text_llm_engine"] = args.engine
    config = load_settings(**overrides)
    configs = {
        schema: config if args.route else load_settings(**overrides, classifier="keywords", extract_schema=schema)
        for schema in ("invoice", "receipt")
    }

    from tasks.extract.stage import generator_spec
    from tasks.models.generation.registry import load_generator

    spec = generator_spec(config.extraction, config.device, config.render.max_pixels)
    generator = load_generator(spec)  # outside the timings
    documents = cases(args.corpus)
    if args.limit:
        documents = [c for s in ("receipt", "invoice") for c in [d for d in documents if d.schema == s][: args.limit]]
    per_field: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    statuses: Counter[str] = Counter()
    reasons: Counter[tuple[str, str, str]] = Counter()  # (schema, review reason code, field): documents
    done_wrong = pages = routed = 0
    seconds = 0.0
    out = args.jsonl.open("w") if args.jsonl else None
    print(f"{'document':40s} {'schema':8s} {'status':7s} {'right':>8s} {'s':>6s}  wrong fields")
    for case, result, elapsed in _processed(documents, configs, args.window or config.runner.window_size):
        extraction = result.extraction
        data = (extraction.data or {}) if extraction else {}
        schema = extraction.schema_id.split("/")[0] if extraction else "-"
        routed += schema == case.schema
        wrong = []
        for field, value in case.fields.items():
            ok = schema == case.schema and same(field, value, data.get(field))
            per_field[f"{case.schema}.{field}"][0] += ok
            per_field[f"{case.schema}.{field}"][1] += 1
            if not ok:
                wrong.append(f"{field}={data.get(field)!r} (truth {value!r})")
        status = result.status.value
        statuses[status] += 1
        for reason in result.review_reasons:
            reasons[(case.schema, reason.code, reason.field or "")] += 1
        done_wrong += status == "done" and bool(wrong)
        pages += len(extraction.pages) if extraction else 1
        seconds += elapsed
        score = f"{len(case.fields) - len(wrong)}/{len(case.fields)}"
        print(f"{case.path.name[:40]:40s} {schema:8s} {status:7s} {score:>8s} {elapsed:6.1f}  {'; '.join(wrong)[:160]}")
        if out:
            record = {
                "file": case.path.name,
                "status": status,
                "data": data,
                "wrong": wrong,
                "reasons": [r.message for r in result.review_reasons],
                "confidence": extraction.field_confidence if extraction else {},
                "grounding": extraction.field_grounding if extraction else {},
                "seconds": round(elapsed, 2),
            }
            out.write(json.dumps(record) + "\n")
    print(f"\n{'what sends documents to review':52s} {'documents':>9s}")
    for (schema, code, field), count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        print(f"{schema + ' ' + code + (' (' + field + ')' if field else ''):52s} {count:9d}")
    print(f"\n{'field':28s} {'right':>5s} {'of':>3s} {'accuracy':>8s}")
    by_schema: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name in sorted(per_field):
        right, n = per_field[name]
        by_schema[name.split(".")[0]][0] += right
        by_schema[name.split(".")[0]][1] += n
        print(f"{name:28s} {right:5d} {n:3d} {right / n:8.2f}")
    for schema_name, (right, n) in sorted(by_schema.items()):
        print(f"{'ALL ' + schema_name.upper() + ' FIELDS':28s} {right:5d} {n:3d} {right / n:8.2f}")
    total_right = sum(r for r, _ in per_field.values())
    total = sum(n for _, n in per_field.values())
    n_docs = len(documents)
    print(f"{'ALL FIELDS':28s} {total_right:5d} {total:3d} {total_right / total:8.2f}")
    print(
        f"\nmodel {config.extraction.model} on {spec.engine}, OCR {config.extraction.ocr_engine}; {n_docs} documents, "
        f"{pages} pages; routed to the right schema {routed}/{n_docs}; statuses {dict(statuses)}"
    )
    rates = ""
    counters = getattr(generator, "counters", None)  # the engines that count their tokens (llama.cpp)
    if counters is not None:
        prefill = counters.prefill_tokens / max(counters.prefill_s, 1e-9)
        decode = counters.decode_tokens / max(counters.decode_s, 1e-9)
        print(
            f"prefill {counters.prefill_tokens} tokens in {counters.prefill_s:.1f} s ({prefill:.0f}/s), "
            f"decode {counters.decode_tokens} tokens in {counters.decode_s:.1f} s ({decode:.1f}/s, "
            f"{counters.decode_steps} steps: {counters.decode_tokens / max(counters.decode_steps, 1):.1f} sequences "
            "decoded together on average)"
        )
        rates = f" prefill_tok_s={prefill:.0f} decode_tok_s={decode:.1f}"
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"engine={spec.engine} field_accuracy={total_right / total:.3f} done_rate={statuses['done'] / n_docs:.3f} "
        f"review_rate={statuses['review'] / n_docs:.3f} done_wrong={done_wrong / n_docs:.3f} "
        f"s_per_page={seconds / max(pages, 1):.1f}{rates} peak_rss_mb={peak_mb:.0f}"
        + (f" routing_accuracy={routed / n_docs:.3f}" if args.route else "")
    )


if __name__ == "__main__":
    main()
