"""The review-export flow, for a deployment to run after the nightly run: new review items go to Label Studio
when it is configured (and its annotations come back), otherwise to a review file under DOCFLOW_REVIEW_EXPORT_TO.
Orchestration only: the work lives in tasks/review/."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from schemas.errors import ConfigError
from schemas.settings import load_settings
from tasks.review import queue
from tasks.review.label_studio import Connection
from tasks.run.prefect_tasks import review_file, review_pull, review_push, with_retries


@flow(name="docflow-review-export", description="Send new review items to Label Studio (or a file) and pull answers.")
def review_export() -> queue.ExportRound:
    settings = load_settings()
    studio, project = settings.label_studio, settings.review.label_studio_project
    logger = get_run_logger()
    if studio.url and studio.api_key and project is not None:
        connection = Connection(studio.url, studio.api_key.get_secret_value())
        # Answers first: items resolved since need not go out again.
        pulled = with_retries(review_pull, settings.runner)(settings, connection, project)
        pushed = with_retries(review_push, settings.runner)(settings, connection, project)
        result = queue.ExportRound(pushed=pushed, pulled=pulled)
    elif settings.review.export_to:
        written, count = with_retries(review_file, settings.runner)(settings, settings.review.export_to)
        result = queue.ExportRound(written=written, items_written=count)
    else:
        raise ConfigError(
            "nowhere to send review items: set LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and "
            "DOCFLOW_REVIEW_LABEL_STUDIO_PROJECT, or DOCFLOW_REVIEW_EXPORT_TO (a directory or s3://bucket/prefix)"
        )
    markdown = queue.export_markdown(result)
    logger.info(markdown.replace("\n", " ").strip())
    create_markdown_artifact(key="docflow-review-export", markdown=markdown, description="docflow review export")
    return result
