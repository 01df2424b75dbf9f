"""The keyword rule (DOCFLOW_CLASSIFIER=keywords): a schema from the page text, no model. Invoice words -> Invoice,
till-receipt words -> Receipt, anything else -> Generic. By default the image classifier's label decides instead
(tasks/classify/prototypes.py)."""

from __future__ import annotations

import re

from schemas.documents import DocumentSchema, GenericDocument, Invoice, Receipt

_INVOICE = re.compile(r"\b(invoice|rechnung|facture|factura|fattura|tax invoice|bill to)\b", re.I)
_RECEIPT = re.compile(r"\b(receipt|cash(ier)?|change due|tunai|subtotal|total rm|thank you|gst)\b", re.I)


def schema_for_text(text: str) -> type[DocumentSchema]:
    if _INVOICE.search(text):
        return Invoice
    if _RECEIPT.search(text):
        return Receipt
    return GenericDocument
