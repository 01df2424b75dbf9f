import pytest

from schemas.errors import ConfigError, ModelLoadError
from tasks.models.cache import load_cached


def test_one_load_per_spec_and_bounded_per_kind() -> None:
    calls = []

    def factory(name: str):  # type: ignore[no-untyped-def]
        calls.append(name)
        return object()

    first = load_cached("test-kind", "a", lambda: factory("a"), "a")
    assert load_cached("test-kind", "a", lambda: factory("a"), "a") is first
    load_cached("test-kind", "b", lambda: factory("b"), "b")
    load_cached("test-kind", "c", lambda: factory("c"), "c")  # evicts "a", the oldest
    assert load_cached("test-kind", "a", lambda: factory("a"), "a") is not first
    assert calls == ["a", "b", "c", "a"]


def test_failures_name_what_could_not_load() -> None:
    def broken():  # type: ignore[no-untyped-def]
        raise OSError("no such file: model.bin")

    with pytest.raises(ModelLoadError, match="cannot load model 'x' \\(DOCFLOW_X\\): OSError: no such file"):
        load_cached("test-kind-2", "x", broken, "model 'x' (DOCFLOW_X)")

    def misconfigured():  # type: ignore[no-untyped-def]
        raise ConfigError("unknown packaged model")

    with pytest.raises(ConfigError, match="unknown packaged model"):
        load_cached("test-kind-2", "y", misconfigured, "y")
