from pathlib import Path

from schemas.settings import with_settings_table

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETTINGS_PAGE = ROOT / "docs" / "settings.md"


def test_readme_settings_table_is_the_one_the_settings_generate() -> None:
    readme = SETTINGS_PAGE.read_text()
    assert with_settings_table(readme) == readme, "docs/settings.md's settings table drifted: make docs-settings"


def test_the_readme_reads_in_two_minutes() -> None:
    assert README.stat().st_size <= 25_000, "README.md is at most 25 KB: move the detail to docs/"


def test_the_table_lists_every_variable_once() -> None:
    from schemas.settings import _ROUTES, GROUPS, Settings, env_name, settings_table

    table = settings_table()
    keys = [*_ROUTES, *(name for name in Settings.model_fields if name not in GROUPS)]
    assert all(table.count(f"| `{env_name(key)}` |") == 1 for key in keys)
    assert "`DOCFLOW_PDF_DPI` | `150` |" in table and "`DOCFLOW_WINDOW_SIZE` | `256` |" in table
