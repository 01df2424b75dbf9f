"""chunked(): in storage, the lowest floor that holds code (schemas is data only), so that storage's queries, the
models' forward batches, the flows' windows and the benchmarks cut sequences the same way."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), in order: itertools.batched of Python 3.12, as lists."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
