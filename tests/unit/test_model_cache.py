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


def test_a_hub_timeout_is_transient_not_a_configuration_error() -> None:
    import httpx

    from schemas.errors import TransientError

    def hub_times_out():  # type: ignore[no-untyped-def]
        try:
            raise httpx.ConnectTimeout("timed out connecting to huggingface.co")
        except httpx.ConnectTimeout as exc:  # loaders wrap the hub's error in their own, as transformers does
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from exc

    with pytest.raises(TransientError, match="the model hub did not answer"):
        load_cached("test-kind-3", "z", hub_times_out, "model 'z'")
