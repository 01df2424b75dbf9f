"""Which exceptions are infrastructure faults (a store or the database is away): those fail the batch, so it is
retried and its objects stay pending, instead of being recorded against a file that did nothing wrong."""

from __future__ import annotations

from schemas.errors import TransientError
from storage.blobstore import is_transient_error


def is_infrastructure_fault(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, TransientError | OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, Exception) and is_transient_error(exc)
