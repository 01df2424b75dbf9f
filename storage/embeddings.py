"""The image-embedding cache in the database: one vector per (image content hash, model id).

Short transactions of their own, outside the batch's: vectors are facts about content, valid whatever happens to
the batch, and concurrent workers inserting the same vector is harmless (insert-or-ignore)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.batching import chunked
from storage.db import unit_of_work
from storage.tables import ImageEmbedding

_CHUNK = 500  # keys per IN (...) query


class SqlEmbeddingCache:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def get(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with unit_of_work(self.database_url) as session:
            for chunk in chunked(unique, _CHUNK):
                stmt = select(ImageEmbedding.content_sha256, ImageEmbedding.vector).where(
                    ImageEmbedding.model_id == model_id,
                    ImageEmbedding.content_sha256.in_(chunk),
                )
                for key, blob in session.execute(stmt):
                    found[key] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put(self, model_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        rows = [
            {"content_sha256": key, "model_id": model_id, "dim": int(v.shape[0]), "vector": v.astype("<f4").tobytes()}
            for key, v in vectors.items()
        ]
        with unit_of_work(self.database_url) as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            session.execute(insert(ImageEmbedding).values(rows).on_conflict_do_nothing())

    def count(self, model_id: str | None = None) -> int:
        with unit_of_work(self.database_url) as session:
            stmt = select(func.count()).select_from(ImageEmbedding)
            if model_id:
                stmt = stmt.where(ImageEmbedding.model_id == model_id)
            return int(session.scalar(stmt) or 0)
