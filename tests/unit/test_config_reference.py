"""The README's configuration reference names every setting, with the default the code has:
a setting added without a line there, or a default changed on one side only, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from humanline.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _reference() -> dict[str, str]:
    """Each variable of the Configuration table, with its default cell."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`HUMANLINE_"):
            continue
        for variable in re.findall(r"`(HUMANLINE_[A-Z_]+)`", cells[0]):
            table[variable] = cells[1]
    return table


def test_every_setting_is_in_the_reference() -> None:
    table = _reference()
    variables = {f"HUMANLINE_{name.upper()}" for name in Settings.model_fields}
    assert sorted(variables - table.keys()) == []
    assert sorted(table.keys() - variables) == []  # nor a variable that is gone


def test_the_reference_gives_the_code_s_defaults() -> None:
    table = _reference()
    for name, field in Settings.model_fields.items():
        cell = table[f"HUMANLINE_{name.upper()}"]
        default = field.default
        if default is None:
            assert cell.startswith("unset"), (name, cell)
        elif isinstance(default, bool):
            assert cell.startswith(f"`{str(default).lower()}`"), (name, cell)
        elif isinstance(default, float) and default.is_integer():
            assert cell.startswith(f"`{int(default)}`"), (name, cell)
        else:
            assert cell.startswith(f"`{default}`"), (name, cell)
