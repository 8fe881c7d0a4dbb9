"""Failed logons: the verdicts first (brute force, spraying, success after failures, lockouts), then
each (account, source) group with why it failed. `Enter` shows the events behind a row."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets.option_list import Option

from engine import logons, views

from ..safe_text import escape, fit
from ..session import Session
from ..workers import ReportsWorkerFailures
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


class LogonsScreen(ReportsWorkerFailures, KeyListNavigation, Screen[None]):
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
        self.all_rows: list[dict[str, Any]] = []
        self.filter_text = ""
        self.texts: list[str] = []  # each row as shown, for / n N
        self.search_text = ""
        self.marked_rows: set[int] = set()  # ids of the rows all of whose events are marked
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
                marked = self._marked_rows(cur, rows)
        except Exception as exc:  # a bad thresholds file or a failed query: say so
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._loaded, rows, marked)

    @staticmethod
    def _marked_rows(cur: Any, rows: list[dict[str, Any]]) -> set[int]:
        marked = set(views.marks(cur))
        if not marked:
            return set()
        return {id(r) for r in rows if (eids := logons.group_eids(cur, r)) and set(eids) <= marked}

    def _loaded(self, rows: list[dict[str, Any]], marked: set[int]) -> None:
        self.all_rows = rows
        self.marked_rows = marked
        self._show(logons.filter_rows(rows, self.filter_text) if self.filter_text else rows)

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
        if self.filter_text:
            title.append(f" matching {escape(self.filter_text)}", style="bold")
        keys = getattr(self.app, "keymap", None)
        if keys is not None:
            title.append(f"\n {keys.display('logons', 'open')} the events · {keys.display('logons', 'filter')} filter · "
                         f"{keys.display('logons', 'frequency')} frequency · {keys.display('logons', 'mark')} mark · "
                         f"{keys.display('logons', 'back')} back", style="dim")
        self.query_one("#logons-title", Static).update(title)
        options = self.query_one(KeyList)
        options.clear_options()
        width = max(30, self.app.size.width - 2)
        self.texts = []
        for row in rows:
            line = Text(no_wrap=True, end="")
            line.append("●" if id(row) in self.marked_rows else " ", style="bold")
            if row["kind"] == "verdict":
                line.append(f"{VERDICT_NAMES.get(row['verdict'], row['verdict']):<12}", style="bold red")
                when = f"{row['first']:%m-%d %H:%M:%S} "
                line.append(when, style="dim")
                line.append(fit(escape(row["reason"]), width - 13 - len(when)))
            else:
                why = "; ".join(f"{logons.code_text(s['status'], s['substatus'])} {s['meaning']} ×{s['count']}"
                                for s in row["statuses"][:2])
                head = f"{row['count']:>7,} "
                line.append(head, style="bold")
                text = f"{row['account']} from {row['source'] or '-'} on {' '.join(row['hosts'][:3])}: {why}"
                line.append(fit(escape(text), width - 1 - len(head)))
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

    # -- filter: the filter language over the rows' columns ------------------------------------------
    def action_filter(self) -> None:
        from .prompt import PromptScreen

        def check(text: str) -> tuple[bool, str]:
            try:
                logons.compile_row_filter(text)
            except ValueError as exc:
                return False, str(exc)
            return True, ""

        self.app.push_screen(PromptScreen("filter failed logons  (user: ip: host: verdict: kind: count:>N after: "
                                          "before: words; empty: all)", initial=self.filter_text,
                                          validate=check, placeholder="host:DC01 kind:verdict"),
                             self._filter_entered)

    def _filter_entered(self, text: str | None) -> None:
        if text is None:
            return
        self._apply(text.strip())

    def _apply(self, text: str) -> None:
        try:
            rows = logons.filter_rows(self.all_rows, text) if text else self.all_rows
        except ValueError as exc:
            self._say(str(exc), error=True)
            return
        self.filter_text = text
        self._show(rows)

    def action_drop_filter(self) -> None:
        if self.filter_text:
            self._apply("")

    # -- frequency of a column of the rows ------------------------------------------------------------
    def action_frequency(self) -> None:
        from .prompt import PromptScreen

        columns = ", ".join(logons.ROW_FREQUENCY_COLUMNS)

        def check(text: str) -> tuple[bool, str]:
            ok = text.strip() in logons.ROW_FREQUENCY_COLUMNS
            return ok, "" if ok else f"one of {columns}"

        self.app.push_screen(PromptScreen(f"frequency of  ({columns})", initial="source", validate=check),
                             self._frequency_of)

    def _frequency_of(self, column: str | None) -> None:
        from .frequency import FrequencyScreen

        if not column:
            return
        rows = list(self.rows)

        def counter(_cur: Any, _view: Any, col: str, *, rarest_first: bool = False, limit: int = 500) -> list[Any]:
            values = logons.frequency(rows, col)
            return (values[::-1] if rarest_first else values)[:limit]

        # What the frequency screen reads of a view: how many there are in it.
        shown = SimpleNamespace(count=sum(int(r["count"]) for r in rows if r["kind"] == "group")
                                if column.strip() != "verdict" else sum(r["kind"] == "verdict" for r in rows))
        self.app.push_screen(FrequencyScreen(self.session, shown, column.strip(), counter=counter,  # type: ignore[arg-type]
                                             noun="failures" if column.strip() != "verdict" else "verdicts"),
                             self._frequency_chosen)

    def _frequency_chosen(self, choice: tuple[str, str, Any, bool] | None) -> None:
        if choice is None:
            return
        _kind, column, value, negate = choice
        term = value_term({"host": "host", "source": "ip", "account": "user"}.get(column, column), value,
                          negate=negate)
        self._apply(f"{self.filter_text} {term}".strip())

    # -- marks: the events behind a row, marked in the timeline ----------------------------------------
    def action_mark(self) -> None:
        index = self.query_one(KeyList).highlighted
        if index is None or not self.rows:
            return
        row = self.rows[index]
        self._mark_worker(row, id(row) not in self.marked_rows)

    @work(thread=True, group="logons-marks", exit_on_error=False)
    def _mark_worker(self, row: dict[str, Any], mark: bool) -> None:
        from engine import views

        try:
            with self.session.cursor() as cur:
                eids = logons.group_eids(cur, row)
                views.set_marks(cur, eids, mark)
        except Exception as exc:
            self.app.call_from_thread(self._say, f"mark failed: {exc}", error=True)
            return
        self.app.call_from_thread(self._marked, row, eids, mark)

    def _marked(self, row: dict[str, Any], eids: list[int], mark: bool) -> None:
        for eid in eids:
            if mark:
                self.session.marks.setdefault(eid, None)
            else:
                self.session.marks.pop(eid, None)
        (self.marked_rows.add if mark else self.marked_rows.discard)(id(row))
        index = self.query_one(KeyList).highlighted
        self._show(self.rows)
        if index is not None:
            self.query_one(KeyList).highlighted = index
        self._say(f"{'marked' if mark else 'unmarked'} the {len(eids)} event(s) behind the row "
                  "(u / U in the timeline step through marks)")

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
