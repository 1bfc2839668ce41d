"""The school fence's default radius is one number: tracker.store.alert_rules.SCHOOL_FENCE_M in Python,
and the schools table's column default in SQL, which cannot import it."""

import re
from pathlib import Path

from tracker.store.alert_rules import SCHOOL_FENCE_M

MIGRATIONS = Path(__file__).resolve().parents[2] / "tracker" / "store" / "migrations"


def test_the_schools_table_default_is_the_constant() -> None:
    defaults = [
        float(m.group(1))
        for sql in sorted(MIGRATIONS.glob("*.sql"))
        for m in re.finditer(
            r"\bfence_m\s+real\b[^,]*?\bDEFAULT\s+([0-9.]+)", sql.read_text(encoding="utf-8")
        )
    ]
    assert defaults == [SCHOOL_FENCE_M]
