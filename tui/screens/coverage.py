"""The coverage panel: per host, what the logs can and cannot show (engine.findings.coverage),
scrolled with the help panel's keys. Opened from the findings view, so that a quiet findings list
is read against what was logged at all."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from ..safe_text import escape
from ..session import Session
from .help import HelpScreen, HelpScroll


def coverage_text(report: list[dict[str, Any]]) -> Text:
    from engine.findings import coverage

    out = Text(no_wrap=False, end="")
    out.append("Coverage", style="bold")
    out.append("  (what each host's logs can show; \"not visible\" is not \"nothing found\")\n", style="dim")
    for host in report:
        out.append(f"\n{escape(str(host['host']), 200)}", style="bold underline")
        out.append(f"  {host['events']:,} events, {host['first']:%Y-%m-%d %H:%M} – {host['last']:%Y-%m-%d %H:%M}\n",
                   style="dim")
        for line in coverage.lines(host):
            out.append(f"  {escape(line, 500)}\n", style="bold" if line.startswith("not visible") else "")
    return out


class CoverageScreen(HelpScreen):
    def __init__(self, session: Session, keymap: Any) -> None:
        super().__init__(keymap)
        self.session = session

    def compose(self) -> ComposeResult:
        with HelpScroll(id="help-scroll"):
            yield Static(Text("coverage: reading…", style="dim"), id="help-text")

    def on_mount(self) -> None:
        super().on_mount()
        self._load()

    @work(thread=True, group="coverage", exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        from engine import findings
        from engine.findings import coverage

        try:
            with self.session.busy("coverage") as (cur, _job):
                report = coverage.report(cur, findings.load().enabled)
        except Exception as exc:  # a failed worker always says so
            self.app.call_from_thread(self._show, Text(f"coverage failed: {exc}", style="bold red"))
            return
        self.app.call_from_thread(self._show, coverage_text(report))

    def _show(self, text: Text) -> None:
        self.query_one("#help-text", Static).update(text)
