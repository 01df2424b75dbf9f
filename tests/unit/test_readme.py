from pathlib import Path

from schemas.settings import readme_with_settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_the_one_the_settings_generate() -> None:
    readme = README.read_text()
    assert readme_with_settings_table(readme) == readme, "the README's settings table drifted: make readme-settings"


def test_the_table_lists_every_variable_once() -> None:
    from schemas.settings import _ROUTES, GROUPS, Settings, env_name, settings_table

    table = settings_table()
    keys = [*_ROUTES, *(name for name in Settings.model_fields if name not in GROUPS)]
    assert all(table.count(f"| `{env_name(key)}` |") == 1 for key in keys)
    assert "`DOCFLOW_PDF_DPI` | `150` |" in table and "`DOCFLOW_WINDOW_SIZE` | `16` |" in table
