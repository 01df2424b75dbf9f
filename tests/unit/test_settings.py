import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError
from schemas.settings import Settings, load_settings


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite:///")
    assert s.source == ["./inbox"]
    assert s.render.dpi == 150


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
        s.database_url = "sqlite:///other.db"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        s.render.dpi = 300  # type: ignore[misc]


def test_flat_variables_land_in_their_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCFLOW_PDF_DPI", "200")
    monkeypatch.setenv("DOCFLOW_WHISPER_BEAM_SIZE", "1")
    monkeypatch.setenv("DOCFLOW_CLASSIFY_PAGES", "all")
    monkeypatch.setenv("DOCFLOW_MODEL_DEVICE", "cpu")
    s = load_settings(window_size=3, transcribe=False)  # keyword overrides use the same flat names
    assert (s.render.dpi, s.whisper.beam_size, s.classifier.pages, s.device.device) == (200, 1, "all", "cpu")
    assert (s.runner.window_size, s.whisper.enabled) == (3, False)


def test_extraction_backend_is_explicit_or_follows_the_vlm_model() -> None:
    assert load_settings().extraction.resolved_backend == "text"
    assert load_settings(vlm_model="Qwen/Qwen2-VL-2B-Instruct").extraction.resolved_backend == "vlm"
    forced = load_settings(vlm_model="Qwen/Qwen2-VL-2B-Instruct", extract_backend="text").extraction
    assert (forced.resolved_backend, forced.model) == ("text", "pkg:qwen2.5-coder-0.5b")
    with pytest.raises(ConfigError, match="DOCFLOW_EXTRACT_BACKEND=vlm needs DOCFLOW_VLM_MODEL"):
        load_settings(extract_backend="vlm")
    with pytest.raises(ConfigError, match="DOCFLOW_EXTRACT_BACKEND"):
        load_settings(extract_backend="ocr")


def test_an_unknown_override_is_refused_by_its_variable_name() -> None:
    with pytest.raises(ConfigError, match="DOCFLOW_PDF_DPII"):
        load_settings(pdf_dpii=100)


def test_preprocessing_tasks_follow_the_cores_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import schemas.settings

    for cores, tasks in [(1, 2), (2, 4), (4, 8), (16, 8)]:
        monkeypatch.setattr(schemas.settings, "usable_cores", lambda cores=cores: cores)
        assert load_settings().runner.pool_size == tasks
    monkeypatch.setenv("DOCFLOW_WORKERS", "3")
    assert load_settings().runner.pool_size == 3
