"""Text evidence for a document's class: the words its page prints. TOTAL, CASH, CHANGE and ROUNDING make a till
receipt, BILL TO, DUE DATE and an invoice number an invoice, DEAR and SINCERELY a letter, boxes and SIGNATURE a
form, far more surely than the page's look (a receipt scan and an invoice scan are both a column of small print).

Each label has cue patterns (English, Malay, French, German, Spanish, Italian); a page's score for a label is the
number of its distinct cues the page prints. `text_probabilities` turns the scores into a distribution over the
labels, which the classifier multiplies into the image classifier's (tasks/classify/prototypes.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

# Fewer characters than this: the page says nothing by its words (a photo, a blank page, a failed OCR).
MIN_TEXT_CHARS = 40

CUES: Mapping[str, tuple[str, ...]] = {
    "receipt": (
        r"\bcash(?:ier)?\b",
        r"\bchange\b",
        r"\btender(?:ed)?\b",
        r"\bround(?:ing)?\b",
        r"\bqty\b",
        r"\bthank\s*you\b",
        r"\breceipt\b",
        r"\btunai\b|\bbaki\b",
        r"\btotal\s*(?:\(?rm\)?|amt|sales|qty)",
        r"\bsub\s*-?\s*total\b",
        r"\bpax\b|\btable\b|\bcounter\b|\bmember\b",
        r"\bvisa\b|\bmastercard\b|\bdebit\b|\bcredit\s*card\b",
        r"\bgoods\s*sold\b|\bnot\s*(?:returnable|refundable|exchangeable)\b",
        r"\b(?:items?|description)\s+(?:qty|quantity)\b|\bu/p\b|\bprice\b",
    ),
    "invoice": (
        r"\binvoice\s*(?:n[or]\.?|number|#|date)",
        r"\bbill(?:ed)?\s*to\b|\bship(?:ped)?\s*to\b|\bsold\s*to\b",
        r"\bdue\s*date\b|\bdate\s*due\b|\bdue\s*by\b|\bdate\s*limite\b|\bf[aä]llig",
        r"\bpayment\s*(?:terms|due|method)\b|\bterms\b",
        r"\bamount\s*due\b|\bbalance\s*due\b|\btotal\s*due\b|\bnet\s*amount\b",
        r"\bvat\b|\btva\b|\bmwst\b|\bust\b|\biva\b",
        r"\bcustomer\s*(?:n[or]\.?|number|id|account)|\baccount\s*(?:n[or]\.?|number)|\bclient\b|\bkunden",
        r"\biban\b|\bswift\b|\bbic\b|\bbank\s*transfer\b",
        r"\bfacture\b|\brechnung\b|\bfactura\b|\bfattura\b",
        r"\bpurchase\s*order\b|\bp\.?o\.?\s*(?:n[or]\.?|number)",
        r"\bpage\s*\d+\s*(?:of|/|sur|von)\s*\d+",
        r"\bunit\s*price\b|\bprix\s*unitaire\b|\beinzelpreis\b",
        r"\btotal\s*(?:excl|incl|ht|ttc|net|gross)|\bnetto\b|\bbrutto\b",
    ),
    "letter": (
        r"\bdear\b",
        r"\bsincerely\b",
        r"\bregards\b",
        r"\byours\s*(?:truly|faithfully|sincerely)\b",
        r"^\s*re\s*:",
        r"\benclosed?\b",
        r"\bmadame?\b|\bmonsieur\b|\bsehr\s*geehrte",
    ),
    "form": (
        r"\bform\b|\bformulaire\b|\bformular\b",
        r"\bsignature\b|\bsigned\b|\bunterschrift\b",
        r"\bapplicant\b|\bapplication\b",
        r"\bdate\s*of\s*birth\b",
        r"\bplease\s*(?:print|complete|fill|type)\b",
        r"[☐☑☒□■]",
        r"\bcheck\s*(?:box|one|here)\b",
        r"\bomb\s*no\b|\bsocial\s*security\b",
        r"\b(?:first|last)\s*name\b",
        r"\bline\s*\d+[a-z]?\b",
    ),
}
_COMPILED = {label: tuple(re.compile(cue, re.I | re.M) for cue in cues) for label, cues in CUES.items()}


# The score of a label without cues of its own (other: a report, a page of text) on a page with text: a page
# printing fewer cues of every kind than this is none of those kinds.
BASELINE_CUES = 1.0
# Labels whose documents print next to no text: a page's words never point to them.
WORDLESS = frozenset({"photo"})


def cue_counts(text: str, labels: Sequence[str]) -> np.ndarray:
    """How many of each label's cues the text prints; BASELINE_CUES for a label without cues (other)."""
    return np.array(
        [
            sum(bool(cue.search(text)) for cue in _COMPILED[label])
            if label in _COMPILED
            else (0.0 if label in WORDLESS else BASELINE_CUES)
            for label in labels
        ],
        float,
    )


def says_something(text: str) -> bool:
    """Whether a page prints enough text for its words to count."""
    return len(text.strip()) >= MIN_TEXT_CHARS


def text_probabilities(text: str, labels: Sequence[str], sharpness: float) -> np.ndarray:
    """A distribution over `labels` from the page's words: softmax of `sharpness` x cue counts; uniform when the
    page prints too little text to say anything."""
    if not says_something(text):
        return np.full(len(labels), 1 / len(labels))
    logits = sharpness * cue_counts(text, labels)
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()
