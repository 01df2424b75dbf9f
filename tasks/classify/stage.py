"""The classification stage: page embeddings of every document in the batch in shared forward batches, joined with
the pages' words (text layer or OCR), then a label, a route to an extraction schema, and the review signals per
document."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import Classification
from schemas.settings import ClassifierSettings
from tasks.classify.prototypes import EmbeddingCache, classify_documents, load_prototypes, review_reasons
from tasks.models.embedders import EmbedderSpec
from tasks.pipeline.stage import ItemUpdate, StageReport, WorkItem
from tasks.preprocess.ocr import OcrEngine, documents_with_page_text, load_ocr
from tasks.preprocess.openvino_session import Precision


class ClassifyStage:
    name = "classify"
    uses_model = True

    def __init__(
        self,
        config: ClassifierSettings,
        spec: EmbedderSpec,
        cache: EmbeddingCache | None,
        ocr_engine: OcrEngine,
        ocr_precision: Precision = "auto",
    ) -> None:
        self.config, self.spec, self.cache = config, spec, cache
        self.ocr_engine, self.ocr_precision = ocr_engine, ocr_precision

    def wants(self, item: WorkItem) -> bool:
        return item.is_document

    def prepare(self, items: Sequence[WorkItem]) -> None:
        """The words of the pages the class is decided on (the text layer, or OCR of a scan), before the device
        slot is taken; extraction reads the same text. The window's pages are read together (a few OCR processes)."""
        if self.config.text_sharpness > 0:
            limit = 1 if self.config.pages == "first" else 10**6
            documents = [item.pages for item in items]
            read = documents_with_page_text(documents, self.ocr_engine, limit, self.ocr_precision)
            for item, pages in zip(items, read, strict=True):
                item.pages = pages

    def warm_up(self, preparation: bool) -> None:
        """Every document is classified: RapidOCR (with `preparation`, when the words are read with it), then the
        embedder and the label prototypes."""
        if preparation and self.config.text_sharpness > 0:
            load_ocr(self.ocr_engine, self.ocr_precision)
        load_prototypes(self.config, self.spec, self.cache)

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
        classifications, batches = classify_documents(
            [item.pages for item in items], self.config, self.spec, self.cache
        )
        report.items += len(items)
        report.pages += sum(len(c.pages) for c in classifications)
        report.batch_capacity = self.spec.batch_size
        report.batch_rows += [len(batch) for batch in batches]
        report.batch_owners += [len(set(batch)) for batch in batches]
        return [self._update(item, c) for item, c in zip(items, classifications, strict=True)]

    def _update(self, item: WorkItem, classification: Classification) -> ItemUpdate:
        """The classifier's result, unless a reviewer gave the object its class: then that class routes it (to the
        schema it is extracted with) and nothing about the class is asked again; the model's label stays on record
        beside the person's."""
        person = item.ref.person_class
        if person is None or person not in self.config.label_names:
            return ItemUpdate(
                classification=classification, review_reasons=tuple(review_reasons(classification, self.config))
            )
        return ItemUpdate(classification=classification.model_copy(update={"route": self.config.route(person)}))
