"""One model per worker process: loads are cached by the frozen spec, serialised, and their failures turned into
a ModelLoadError that names the setting to fix (a model that cannot load stops the run, not one file)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar

from schemas.errors import ConfigError, ModelLoadError, TransientError
from tasks.faults import is_infrastructure_fault

T = TypeVar("T")
_lock = threading.Lock()
_loaded: dict[tuple[str, Hashable], object] = {}
_MAX_PER_KIND = 2  # a worker rarely needs more than two configurations of one kind at a time


def load_cached(kind: str, spec: Hashable, factory: Callable[[], T], describe: str) -> T:
    """Return the model for (kind, spec), building it with `factory` on first use."""
    key = (kind, spec)
    with _lock:
        if key in _loaded:
            return _loaded[key]  # type: ignore[return-value]
        try:
            model = factory()
        except ConfigError:
            raise
        except Exception as exc:  # torch, CTranslate2 and hub clients raise many types for "cannot load"
            if is_infrastructure_fault(exc):  # e.g. the database went away while cached prototypes loaded
                raise
            if _network_fault(exc):  # the hub timed out or dropped the connection: the next try may work
                raise TransientError(f"cannot load {describe}: the model hub did not answer ({exc})") from exc
            raise ModelLoadError(f"cannot load {describe}: {type(exc).__name__}: {exc}") from exc
        same_kind = [k for k in _loaded if k[0] == kind]
        if len(same_kind) >= _MAX_PER_KIND:
            del _loaded[same_kind[0]]  # oldest first: dict order is insertion order
        _loaded[key] = model
        return model


def _network_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [TimeoutError, ConnectionError]
    try:
        import httpx  # huggingface_hub's client

        types += [httpx.TimeoutException, httpx.NetworkError]
    except ImportError:
        pass
    try:
        import requests

        types += [requests.exceptions.Timeout, requests.exceptions.ConnectionError]
    except ImportError:
        pass
    return tuple(types)


def _network_fault(exc: BaseException) -> bool:
    """A timeout or dropped connection anywhere in the chain: loaders wrap the hub's errors in their own."""
    network = _network_types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, network):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
