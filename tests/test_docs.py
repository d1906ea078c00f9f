"""The README documents every setting the code has, and only those."""

from __future__ import annotations

import re

from app.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(FACEGATE_[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    in_code = {f"FACEGATE_{name.upper()}" for name in Settings.model_fields}
    assert documented == in_code


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / "README.md").read_text()
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")
