"""The engine is a library for both faces: importing it never drags in the terminal UI stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

UI_PACKAGES = ("textual", "rich")


def loaded_after_import(modules: list[str]) -> set[str]:
    """Top-level packages loaded by a fresh interpreter after importing `modules`."""
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("modules", [
    ["engine"],
    ["engine", "engine.ingest", "engine.views", "engine.filters", "engine.decode"],
    ["engine.ingest.pipeline", "engine.ingest.normalise", "engine.summary", "engine.case", "engine.schema"],
    ["engine.boots", "engine.sessions", "engine.derived", "engine.logons", "engine.logon_map"],
])
def test_importing_the_engine_loads_neither_textual_nor_rich(modules: list[str]) -> None:
    loaded = loaded_after_import(modules)
    assert "engine" in loaded
    assert not loaded & set(UI_PACKAGES), f"engine import pulled in {sorted(loaded & set(UI_PACKAGES))}"


def test_the_check_would_notice_a_ui_import() -> None:
    # Guards the guard: the same probe does see rich when something imports it.
    assert "rich" in loaded_after_import(["engine", "rich.console"])


def test_the_headless_cli_module_does_not_import_textual() -> None:
    loaded = loaded_after_import(["tui.cli"])
    assert "textual" not in loaded
