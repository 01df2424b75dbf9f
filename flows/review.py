"""The review-export flow, for a deployment to run after the nightly run: new review items go to Label Studio
when it is configured (and its annotations come back), otherwise to a review file under DOCFLOW_REVIEW_EXPORT_TO.
Orchestration only: the work lives in tasks/review/."""

from __future__ import annotations

import os

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from schemas.errors import ConfigError
from schemas.settings import Settings, load_settings
from tasks.review import queue
from tasks.review.label_studio import Connection


@task(name="review-push", retries=2, retry_delay_seconds=10)
def push(settings: Settings, connection: Connection, project: int) -> queue.PushReport:
    return queue.push(settings, connection, project, None)


@task(name="review-pull", retries=2, retry_delay_seconds=10)
def pull(settings: Settings, connection: Connection, project: int) -> queue.ApplyReport:
    return queue.pull(settings, connection, project)


@task(name="review-file", retries=2, retry_delay_seconds=10)
def write_file(settings: Settings, location: str) -> tuple[str, int]:
    return queue.export_to_store(settings, location)


@flow(name="docflow-review-export", description="Send new review items to Label Studio (or a file) and pull answers.")
def review_export() -> queue.ExportRound:
    settings = load_settings()
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    project = settings.review.label_studio_project
    logger = get_run_logger()
    if url and key and project is not None:
        connection = Connection(url, key)
        pulled = pull(settings, connection, project)  # answers first: items resolved since need not go out again
        pushed = push(settings, connection, project)
        result = queue.ExportRound(pushed=pushed, pulled=pulled)
    elif settings.review.export_to:
        written, count = write_file(settings, settings.review.export_to)
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
