"""Which exceptions are infrastructure faults (a store or the database is away): those fail the task, so it is
retried and its objects stay pending, instead of being recorded against a file that did nothing wrong."""

from __future__ import annotations

from schemas.errors import TransientError


def is_infrastructure_fault(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    # The database and S3 libraries are imported only here, and only if present: the model wrappers use this check
    # too, on machines (a bare GPU box running bench/gpu_models.py) that have neither.
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError
    except ImportError:
        pass
    else:
        if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return True
    from storage.blobstore import is_transient_error

    try:
        return isinstance(exc, Exception) and is_transient_error(exc)
    except ImportError:  # no botocore
        return isinstance(exc, ConnectionError | TimeoutError)
