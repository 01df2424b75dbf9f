"""The extraction stage: a schema per document (its class's route, or the keyword rule), page texts (OCR, before
the device slot is taken) for a text model to read and for every value to be checked against, then the pages of
every document in shared forward batches."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.documents import SCHEMAS, DocumentSchema
from schemas.records import ReviewReason
from schemas.settings import DeviceSettings, ExtractionSettings, LLMServerSettings
from tasks.classify.keywords import schema_for_text
from tasks.extract.extraction import DocumentPages, extract_pages, merge_pages, review_reasons, with_grounding
from tasks.models.generation.base import GeneratorSpec, ServerEndpoint
from tasks.models.generation.registry import load_generator
from tasks.pipeline.stage import ItemUpdate, StageReport, WorkItem
from tasks.preprocess.ocr import documents_with_page_text, has_text

NOTHING_TO_READ = ReviewReason(
    stage="extract", code="no_text", message="no readable text found (OCR): nothing to extract"
)


def generator_spec(
    extraction: ExtractionSettings, device: DeviceSettings, max_pixels: int, server: LLMServerSettings | None = None
) -> GeneratorSpec:
    """The model cache key of the configured extraction backend. A VLM sees pages at most as large as
    preprocessing made them (`max_pixels`). With a server URL set, the server runs the model (engine "openai")."""
    kind = extraction.resolved_backend
    endpoint = None
    if server is not None and server.url is not None:
        endpoint = ServerEndpoint(server.url, server.api_key, server.in_flight, server.timeout_s)
        engine: str | None = "openai"
    else:
        engine = extraction.text_llm_engine if kind == "text" else None
    return GeneratorSpec(
        kind=kind,
        model=extraction.model,
        engine=engine,
        device=device.device,
        dtype=device.dtype,
        min_pixels=extraction.vlm_min_pixels,
        max_pixels=max_pixels,
        cache_dir=device.cache_dir,
        server=endpoint,
    )


class ExtractStage:
    name = "extract"
    uses_model = True

    def __init__(self, config: ExtractionSettings, spec: GeneratorSpec) -> None:
        self.config, self.spec = config, spec
        if spec.server is not None and spec.server.in_flight > config.batch_size:
            # A server works on every request in flight at once: each generate() call sends that many pages.
            self.config = config.model_copy(update={"batch_size": spec.server.in_flight})

    @property
    def reads_text(self) -> bool:
        return self.config.resolved_backend == "text"

    def wants(self, item: WorkItem) -> bool:
        # A classified document routed to no schema (a photo) has nothing to extract.
        return item.is_document and (item.classification is None or item.classification.route is not None)

    def prepare(self, items: Sequence[WorkItem]) -> None:
        """Page text: the text layer, or OCR of pages without one. A text model reads it; every backend's values
        are checked against it (grounding). The window's pages are read together (a few OCR processes)."""
        config = self.config
        documents = [item.pages for item in items]
        read = documents_with_page_text(documents, config.ocr_engine, config.max_pages, config.ocr_precision)
        for item, pages in zip(items, read, strict=True):
            item.pages = pages

    def warm_up(self, preparation: bool) -> None:
        pass  # the generator (gigabytes) loads when the first document comes: a run may route none to extraction

    def _schema(self, item: WorkItem) -> type[DocumentSchema]:
        if self.config.schema_name != "auto":
            return SCHEMAS[self.config.schema_name]
        if item.classification is not None and item.classification.route is not None:
            return SCHEMAS[item.classification.route]
        return schema_for_text("\n".join(p.text for p in item.pages[: self.config.max_pages]))

    def __call__(self, items: Sequence[WorkItem], report: StageReport) -> list[ItemUpdate]:
        updates: dict[int, ItemUpdate] = {}
        documents = []
        for item in items:
            pages = item.pages[: self.config.max_pages]
            if self.reads_text and not any(has_text(p.text) for p in pages):  # a photo, a blank page, a bad scan
                updates[item.ref.id] = ItemUpdate(review_reasons=(NOTHING_TO_READ,))
            else:
                documents.append(DocumentPages(item.ref.id, self._schema(item), pages))
        if documents:
            generator = load_generator(self.spec)
            result = extract_pages(generator, documents, self.config)
            for document in documents:
                extraction = merge_pages(
                    document.schema, result.outcomes[document.owner], self.config.resolved_backend, generator.model_id
                )
                extraction = with_grounding(extraction, document.schema, [p.text for p in document.pages])
                reasons = tuple(review_reasons(extraction, self.config))
                updates[document.owner] = ItemUpdate(extraction=extraction, review_reasons=reasons)
            report.pages += sum(len(d.pages) for d in documents)
            report.batch_capacity = self.config.batch_size
            report.batch_rows += [len(b.owners) for b in result.batches]
            report.batch_owners += [len(set(b.owners)) for b in result.batches]
        report.items += len(items)
        return [updates[item.ref.id] for item in items]
