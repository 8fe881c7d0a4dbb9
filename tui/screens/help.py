"""Help generated from the active keymap: every action and preset with its keys."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ..keymap import ACTIONS, Keymap
from ..safe_text import escape
from ..workers import ReportsWorkerFailures
from .base import keymap_bindings

SCREEN_TITLES = {
    "timeline": "Timeline",
    "detail": "Event detail",
    "histogram": "Histogram",
    "frequency": "Frequency",
    "filters": "Filter list",
    "help": "Help",
    "sessions": "Sessions",
    "logons": "Failed logons",
    "findings": "Findings",
    "tree": "Process tree",
    "process": "Process",
}


def help_text(keymap: Keymap) -> Text:
    out = Text(no_wrap=False, end="")
    out.append("ashiato keys", style="bold")
    out.append(f"  (from {', '.join(keymap.files)})\n", style="dim")
    key_width = 14
    indent = " " * (key_width + 2)
    out.append("\nEvent-ID hotkeys (presets)\n", style="bold underline")
    for preset in keymap.presets.values():
        keys = ", ".join(_display(k) for k in preset.keys) or "(unbound)"
        out.append(f"  {keys:<{key_width}}", style="bold")
        out.append(escape(preset.title, 200) + "\n")
        out.append(f"{indent}{escape(preset.filter, 400)}\n", style="dim")
    for screen, actions in ACTIONS.items():
        out.append(f"\n{SCREEN_TITLES.get(screen, screen)}\n", style="bold underline")
        for action, description in actions.items():
            keys = keymap.display(screen, action) or "(unbound)"
            if len(keys) >= key_width:
                # Too many keys for the column: the description goes on its own line.
                out.append(f"  {keys}\n", style="bold")
                out.append(f"{indent}{description}\n")
                continue
            out.append(f"  {keys:<{key_width}}", style="bold")
            out.append(f"{description}\n")
    out.append("\nFilter language\n", style="bold underline")
    out.append("  event_id:4624,4625 user:alice -logon_type:5 after:2024-03-12T09:00 before:2024-03-12T10:00\n"
               "  image:*\\rundll32.exe \"net user\" mimikatz\n", style="dim")
    out.append("  Terms are ANDed; a,b is either value; * is a wildcard; bare words search every field.\n")
    return out


def _display(key: str) -> str:
    from ..keymap import key_display

    return key_display(key)


class HelpScroll(VerticalScroll, inherit_bindings=False):
    """Scrolls only through the help keymap."""


class HelpScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS = keymap_bindings("help")
    DEFAULT_CSS = """
    HelpScreen HelpScroll { height: 1fr; padding: 0 1; }
    """

    def __init__(self, keymap: Keymap) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with HelpScroll(id="help-scroll"):
            yield Static(help_text(self.keymap), id="help-text")

    def on_mount(self) -> None:
        self.query_one(HelpScroll).focus()

    def action_cursor_down(self) -> None:
        self.query_one(HelpScroll).scroll_down(animate=False)

    def action_cursor_up(self) -> None:
        self.query_one(HelpScroll).scroll_up(animate=False)

    def action_page_down(self) -> None:
        self.query_one(HelpScroll).scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.query_one(HelpScroll).scroll_page_up(animate=False)

    def action_back(self) -> None:
        self.dismiss(None)
