"""Every setting is documented in README.md's configuration table, with its environment variable and
its default as the code has it (a threshold's default changed in tracker.monitor shows up here)."""

import re
from pathlib import Path

from tracker.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `(TRACKER_[A-Z0-9_]+)` \| ([^|]+) \|", re.MULTILINE)


def shown(default: object) -> str:
    """A default as the table writes it."""
    if default is None:
        return "(unset)"
    if default == "":
        return "(empty)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def test_every_setting_is_in_the_readme_table_with_its_default() -> None:
    rows = {name: default.strip() for name, default in ROW.findall(README.read_text(encoding="utf-8"))}
    wrong = {
        f"TRACKER_{name.upper()}": (rows.get(f"TRACKER_{name.upper()}", "no row"), shown(field.default))
        for name, field in Settings.model_fields.items()
        if rows.get(f"TRACKER_{name.upper()}") != shown(field.default)
    }
    assert wrong == {}, "README's configuration table (variable: (README says, the code says))"
