"""One-line prompts at the bottom of the screen: filter (live count, history, error caret), search,
go to time, tag, save name; and the export dialog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Input, Static

from engine.filters import FilterError
from engine.views import EXPORT_FORMATS

from ..safe_text import escape
from ..session import Session, filter_error_text
from ..workers import ReportsWorkerFailures

LIVE_DELAY = 0.25

# validate(text) -> (ok, message): message is shown under the input.
Validator = Callable[[str], tuple[bool, str]]


class PromptScreen(ReportsWorkerFailures, ModalScreen[str | None]):
    """Ask for one line. Enter returns it, Escape returns None."""

    DEFAULT_CSS = """
    PromptScreen { align: left bottom; background: transparent; }
    PromptScreen > #prompt-box { height: auto; width: 100%; background: $panel; border-top: solid $accent;
                                 padding: 0 1; }
    PromptScreen #prompt-title { color: $text-muted; height: 1; }
    PromptScreen Input, PromptScreen Input:focus { border: none; height: 1; padding: 0; background: $boost; }
    PromptScreen #prompt-info { height: auto; min-height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel", show=False),
        Binding("up", "history(-1)", "older", show=False),
        Binding("down", "history(1)", "newer", show=False),
    ]

    def __init__(self, title: str, *, initial: str = "", history: list[str] | None = None,
                 validate: Validator | None = None, live_filter: tuple[Session, str] | None = None,
                 placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial
        self.history = history if history is not None else []
        self._history_index = len(self.history)
        self._draft = initial
        self.validate = validate
        self.live_filter = live_filter  # (session, filters already active)
        self.placeholder = placeholder
        self._live_timer: Timer | None = None
        self._live_serial = 0
        self.live_count: int | None = None
        self.info_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.title_text), id="prompt-title")
            yield Input(value=self.initial, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-info")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self.initial:
            self._changed(self.initial)

    @property
    def value(self) -> str:
        return self.query_one(Input).value

    def set_info(self, text: Text | str, *, error: bool = False) -> None:
        self.info_text = text.plain if isinstance(text, Text) else text
        shown = text if isinstance(text, Text) else Text(text, style="bold red" if error else "dim")
        self.query_one("#prompt-info", Static).update(shown)

    @on(Input.Changed)
    def _on_changed(self, event: Input.Changed) -> None:
        self._changed(event.value)

    def _changed(self, text: str) -> None:
        if self.validate is not None:
            ok, message = self.validate(text)
            self.set_info(message, error=not ok)
        if self.live_filter is not None:
            self._live_serial += 1
            self._cancel_count()
            if not self._show_filter_error(text):
                self.set_info("counting…")
                self._live_timer = self.set_timer(LIVE_DELAY, self._start_count)

    def _show_filter_error(self, text: str) -> bool:
        assert self.live_filter is not None
        session, _active = self.live_filter
        try:
            session.compile(text)
        except FilterError as exc:
            caret = Text(no_wrap=True, end="")
            caret.append(escape(text, 400) + "\n")
            caret.append(" " * exc.position + "^" + "~" * max(0, len(exc.token) - 1), style="bold red")
            caret.append("\n" + filter_error_text(exc, text), style="bold red")
            self.live_count = None
            self.set_info(caret, error=True)
            return True
        return False

    def _start_count(self) -> None:
        assert self.live_filter is not None
        session, active = self.live_filter
        combined = f"{active} {self.value}".strip()
        self._count(self._live_serial, session, combined)

    @work(thread=True, group="prompt-count", exclusive=True, exit_on_error=False)
    def _count(self, serial: int, session: Session, text: str) -> None:
        try:
            with session.busy("counting") as (cur, job):
                self._count_job = job
                # A full-text filter counts in steps; each shows the matches found so far.
                for view in session.resolve_steps(cur, text, job):
                    self.app.call_from_thread(self._count_done, serial, view.count, view.total, view.done)
        except Exception as exc:
            self.app.call_from_thread(self._count_failed, serial, str(exc))

    def _cancel_count(self) -> None:
        if self._live_timer is not None:
            self._live_timer.stop()
            self._live_timer = None
        job = getattr(self, "_count_job", None)
        if job is not None and self.live_filter is not None:
            self.live_filter[0].cancel(job)
            self._count_job = None

    def _count_done(self, serial: int, count: int, total: int, done: float = 1.0) -> None:
        if serial != self._live_serial:
            return
        if done < 1.0:
            self.set_info(Text(f"{count:,} events match so far ({done:.0%} searched)", style="bold"))
            return
        self.live_count = count
        self.set_info(Text(f"{count:,} of {total:,} events match", style="bold"))

    def _count_failed(self, serial: int, message: str) -> None:
        if serial == self._live_serial and "Interrupt" not in message:
            self.set_info(message, error=True)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self.validate is not None and text:
            ok, message = self.validate(text)
            if not ok:
                self.set_info(message, error=True)
                return
        if self.live_filter is not None and text and self._show_filter_error(text):
            return
        self._cancel_count()
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self.dismiss(text)

    def action_cancel(self) -> None:
        self._cancel_count()
        self.dismiss(None)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        inp = self.query_one(Input)
        if self._history_index == len(self.history):
            self._draft = inp.value
        self._history_index = max(0, min(len(self.history), self._history_index + step))
        text = self._draft if self._history_index == len(self.history) else self.history[self._history_index]
        inp.value = text
        inp.cursor_position = len(text)


class ExportScreen(ReportsWorkerFailures, ModalScreen[tuple[str, str, bool] | None]):
    """Where to export, and whether only the marked events: returns (path, format, marked_only)."""

    DEFAULT_CSS = """
    ExportScreen { align: left bottom; background: transparent; }
    ExportScreen > #export-box { height: auto; width: 100%; background: $panel; border-top: solid $accent;
                                 padding: 0 1; }
    ExportScreen Input, ExportScreen Input:focus { border: none; height: 1; padding: 0; background: $boost; }
    ExportScreen #export-scope, ExportScreen #export-info { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel", show=False),
        Binding("ctrl+t", "toggle_scope", "marked / view", show=False, priority=True),
    ]

    def __init__(self, *, view_rows: int, marked_rows: int, default_path: str = "ashiato-export.csv") -> None:
        super().__init__()
        self.view_rows = view_rows
        self.marked_rows = marked_rows
        self.marked_only = False
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(Text("Export to (.csv, .jsonl or .parquet):", style="dim"))
            yield Input(value=self.default_path, id="export-path")
            yield Static("", id="export-scope")
            yield Static("", id="export-info")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._show_scope()

    def _show_scope(self) -> None:
        text = Text(no_wrap=True)
        if self.marked_only:
            text.append(f"the {self.marked_rows:,} marked events", style="bold")
        else:
            text.append(f"the current view: {self.view_rows:,} events", style="bold")
        text.append("   ctrl+t: export ", style="dim")
        text.append("the current view" if self.marked_only else "only the marked events", style="dim")
        self.query_one("#export-scope", Static).update(text)

    def action_toggle_scope(self) -> None:
        self.marked_only = not self.marked_only
        self._show_scope()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @staticmethod
    def format_of(path: str) -> str | None:
        suffix = Path(path).suffix.lower().lstrip(".")
        suffix = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
        return suffix if suffix in EXPORT_FORMATS else None

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        fmt = self.format_of(path)
        info = self.query_one("#export-info", Static)
        if not path or fmt is None:
            info.update(Text("the file name must end in .csv, .jsonl or .parquet", style="bold red"))
            return
        if self.marked_only and not self.marked_rows:
            info.update(Text("no event is marked (m marks one)", style="bold red"))
            return
        self.dismiss((str(Path(path).expanduser()), fmt, self.marked_only))


def time_validator(text: str) -> tuple[bool, str]:
    from .timeline import parse_goto_time

    if not text.strip():
        return True, "a time: 2024-03-12 09:30, 2024-03-12T09:30:05Z, or 09:30 (on the current day)"
    try:
        when = parse_goto_time(text, None, False)
    except ValueError as exc:
        return False, str(exc)
    return True, f"→ {when:%Y-%m-%d %H:%M:%S} UTC"


def filter_validator(session: Session, compile_text: Callable[[str], Any] | None = None) -> Validator:
    """Checks a filter as it is typed: over events (the session's compiler) or, given
    `compile_text`, over another table (sessions)."""
    compiler = compile_text or session.compile

    def check(text: str) -> tuple[bool, str]:
        try:
            compiler(text)
        except FilterError as exc:
            return False, f"{exc.caret(text)}\n{filter_error_text(exc, text)}"
        return True, ""

    return check
