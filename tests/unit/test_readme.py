"""The README's settings table is the user's reference: it must list every setting there is."""

from pathlib import Path

from schemas.settings import Settings, env_name


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in readme]
    assert missing == []
