"""Every setting is documented in README.md with its environment variable."""

from pathlib import Path

from tracker.config import Settings


def test_every_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [
        f"TRACKER_{name.upper()}"
        for name in Settings.model_fields
        if f"`TRACKER_{name.upper()}`" not in readme
    ]
    assert missing == []
