"""The README's settings table names every setting, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from server.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_settings() -> set[str]:
    text = README.read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z0-9_]+)`", first_cell))
    return names


def test_the_readme_settings_table_matches_the_settings_object() -> None:
    expected = {name.upper() for name in Settings.model_fields}
    assert _documented_settings() == expected
