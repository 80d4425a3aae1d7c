"""docs/rules.md lists every rule with the tests that cite its id: it must be regenerated
(scripts/rules_doc.py) when a test citing a rule is added, renamed or removed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_rules_md_is_up_to_date_with_the_tests_that_cite_each_rule() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rules_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = (ROOT / "docs" / "rules.md").read_text()
    for rule in ("R-AUTH-1", "R-ROUTE-1", "R-URG-2", "R-CAL-1", "R-DEV"):
        assert f"### {rule}" in doc
