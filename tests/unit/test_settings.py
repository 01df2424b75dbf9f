import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError
from schemas.settings import Settings, load_settings


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite:///")
    assert s.source == ["./inbox"]
    assert s.pdf_dpi == 150


def test_several_sources_from_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCFLOW_SOURCE", "s3://calls/2026/, s3://docs ,./local")
    assert load_settings().source == ["s3://calls/2026/", "s3://docs", "./local"]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DOCFLOW_PDF_DPI", "5000", "DOCFLOW_PDF_DPI"),
        ("DOCFLOW_PDF_DPI", "high", "DOCFLOW_PDF_DPI"),
        ("DOCFLOW_SOURCE", "s3:///no-bucket", "DOCFLOW_SOURCE"),
        ("DOCFLOW_SOURCE", "ftp://host/x", "DOCFLOW_SOURCE"),
        ("DOCFLOW_DATABASE_URL", "mysql://x", "DOCFLOW_DATABASE_URL"),
        ("DOCFLOW_VAD_THRESHOLD", "1.5", "DOCFLOW_VAD_THRESHOLD"),
        ("DOCFLOW_MAX_FILE_MB", "-1", "DOCFLOW_MAX_FILE_MB"),
        ("DOCFLOW_CLASS_ROUTES", "{invoice: generic", "DOCFLOW_CLASS_ROUTES: not valid JSON"),
        ("DOCFLOW_CLASS_LABELS", "[not json", "DOCFLOW_CLASS_LABELS: not valid JSON"),
        ("DOCFLOW_CLASS_TEMPLATES", "a scan of {}.", "DOCFLOW_CLASS_TEMPLATES: not valid JSON"),
        ("DOCFLOW_MAX_AUDIO_S", "0", "DOCFLOW_MAX_AUDIO_S"),
    ],
)
def test_invalid_setting_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert named in str(excinfo.value)


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCFLOW_SOURCE", "s3://env-bucket")
    assert load_settings(source=["./other"]).source == ["./other"]


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.pdf_dpi = 300  # type: ignore[misc]
