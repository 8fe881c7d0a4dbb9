"""Failed logons: the verdicts first (brute force, spraying, success after failures, lockouts), then
each (account, source) group with why it failed. `Enter` shows the events behind a row."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets.option_list import Option

from engine import logons

from ..safe_text import escape, fit
from ..session import Session
from .base import KeyList, KeyListNavigation, keymap_bindings
from .timeline import value_term

FAILURE_IDS = "eid:4625,4768,4771,4776 -status:0"
VERDICT_NAMES = {"brute_force": "BRUTE FORCE", "password_spray": "SPRAY", "success_after_failures": "SUCCESS",
                 "lockout": "LOCKOUT"}


def _source_term(source: str | None) -> str | None:
    if not source:
        return None
    try:
        ipaddress.ip_address(source.split("%", 1)[0])
    except ValueError:
        # A failure's source is its address when it has one, else its workstation name (as the
        # engine groups them): a workstation source leaves out events that carry an address.
        return f"{value_term('workstation', source)} -src_ip:*"
    return value_term("src_ip", source)


def timeline_filter(row: dict[str, Any]) -> str:
    """The timeline filter that shows the events behind a verdict or a group."""
    terms: list[str] = []
    verdict = row.get("verdict")
    if verdict == "lockout":
        terms.append("eid:4740")
    elif verdict == "success_after_failures":
        terms.append("eid:4624,4625,4768,4771,4776")
    else:
        terms.append(FAILURE_IDS)
    if row.get("account") and verdict != "password_spray" and row.get("after") != "password_spray":
        terms.append(value_term("user", row["account"]))
    if verdict in ("brute_force", "lockout") and row.get("host"):
        terms.append(value_term("host", row["host"]))
    source = _source_term(row.get("source")) if verdict != "lockout" else None
    if source:
        terms.append(source)
    if verdict is not None:
        terms.append(f"after:{row['first'].isoformat()}")
        terms.append(f"before:{(row['last'] + timedelta(microseconds=1)).isoformat()}")
    return " ".join(terms)


class LogonsScreen(KeyListNavigation, Screen[None]):
    BINDINGS = keymap_bindings("logons")
    DEFAULT_CSS = """
    LogonsScreen #logons-title { height: 2; background: $panel; }
    LogonsScreen KeyList { height: 1fr; }
    LogonsScreen KeyList > .option-list--option-highlighted,
    LogonsScreen KeyList:focus > .option-list--option-highlighted { text-style: bold reverse; }
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.rows: list[dict[str, Any]] = []
        self.texts: list[str] = []  # each row as shown, for / n N
        self.search_text = ""
        self.is_loading = True

    def compose(self) -> ComposeResult:
        yield Static(Text(" failed logons: reading…", style="dim"), id="logons-title")
        yield KeyList(id="logons-list")

    def on_mount(self) -> None:
        self.query_one(KeyList).focus()
        self._load()

    @work(thread=True, group="logons", exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            thresholds = logons.load_thresholds()
            with self.session.busy("failed logons") as (cur, _job):
                rows = logons.failed(cur, thresholds)
        except Exception as exc:  # a bad thresholds file or a failed query: say so
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, rows)

    def _failed(self, error: str) -> None:
        self.is_loading = False
        self.query_one("#logons-title", Static).update(Text(f" failed logons: {error}", style="bold red"))

    def _show(self, rows: list[dict[str, Any]]) -> None:
        self.is_loading = False
        self.rows = rows
        verdicts = sum(1 for r in rows if r["kind"] == "verdict")
        title = Text(no_wrap=True)
        title.append(" failed logons", style="bold")
        title.append(f": {verdicts} verdict(s), {len(rows) - verdicts} account/source group(s)")
        keys = getattr(self.app, "keymap", None)
        if keys is not None:
            title.append(f"\n {keys.display('logons', 'open')} the events · {keys.display('logons', 'back')} back",
                         style="dim")
        self.query_one("#logons-title", Static).update(title)
        options = self.query_one(KeyList)
        options.clear_options()
        width = max(30, self.app.size.width - 2)
        self.texts = []
        for row in rows:
            line = Text(no_wrap=True, end="")
            if row["kind"] == "verdict":
                line.append(f"{VERDICT_NAMES.get(row['verdict'], row['verdict']):<12}", style="bold red")
                when = f"{row['first']:%m-%d %H:%M:%S} "
                line.append(when, style="dim")
                line.append(fit(escape(row["reason"]), width - 12 - len(when)))
            else:
                why = "; ".join(f"{logons.code_text(s['status'], s['substatus'])} {s['meaning']} ×{s['count']}"
                                for s in row["statuses"][:2])
                head = f"{row['count']:>7,} "
                line.append(head, style="bold")
                text = f"{row['account']} from {row['source'] or '-'} on {' '.join(row['hosts'][:3])}: {why}"
                line.append(fit(escape(text), width - len(head)))
            self.texts.append(line.plain.lower())
            options.add_option(Option(line))
        if rows:
            options.highlighted = 0

    def action_open(self) -> None:
        index = self.query_one(KeyList).highlighted
        if index is None or not self.rows:
            return
        row = self.rows[index]
        label = VERDICT_NAMES.get(row.get("verdict") or "", "failed logons")
        self.app.pop_screen()
        self.app.show_events(timeline_filter(row), f"{label.lower()}: {row.get('account') or row.get('source')}")  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()

    def _say(self, text: str, *, error: bool = False) -> None:
        self.query_one("#logons-title", Static).update(Text(f" {text}", style="bold red" if error else "bold"))

    # -- search: a substring of the rows as shown (accounts, sources, hosts, reasons) ------------------
    def action_search(self) -> None:
        from .prompt import PromptScreen

        self.app.push_screen(PromptScreen("search failed logons  (text in the rows; n / N next / previous)",
                                          initial=self.search_text, placeholder="alice"), self._search_entered)

    def _search_entered(self, text: str | None) -> None:
        if text:
            self.search_text = text.lower()
            self._find(1, start=-1)

    def _find(self, step: int, start: int | None = None) -> None:
        if not self.search_text:
            self._say("no search: / starts one")
            return
        here = self.query_one(KeyList).highlighted or 0 if start is None else start
        order = range(here + step, len(self.texts)) if step > 0 else range(here - 1, -1, -1)
        for index in order:
            if self.search_text in self.texts[index]:
                self.query_one(KeyList).highlighted = index
                return
        self._say(f"no more rows with {escape(self.search_text)}")

    def action_next_match(self) -> None:
        self._find(1)

    def action_previous_match(self) -> None:
        self._find(-1)

    # -- export and help -------------------------------------------------------------------------------
    def action_export(self) -> None:
        from .prompt import ExportScreen

        self.app.push_screen(ExportScreen(view_rows=len(self.rows), marked_rows=0,
                                          default_path="ashiato-failed-logons.jsonl"), self._export_chosen)

    def _export_chosen(self, choice: tuple[str, str, bool] | None) -> None:
        if choice is None:
            return
        path, fmt, _marked = choice
        if fmt != "jsonl":
            self._say("failed logons export as .jsonl (verdicts and groups have lists inside)", error=True)
            return
        self._export_worker(path, list(self.rows))

    @work(thread=True, group="logons-export", exit_on_error=False)
    def _export_worker(self, path: str, rows: list[dict[str, Any]]) -> None:
        import orjson

        try:
            with open(path, "wb") as out:
                for row in rows:
                    out.write(orjson.dumps(row, default=str) + b"\n")
        except OSError as exc:
            self.app.call_from_thread(self._say, f"export failed: {exc}", error=True)
            return
        self.app.call_from_thread(self._say, f"{len(rows):,} rows written to {path}")

    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.app.keymap))  # type: ignore[attr-defined]
