"""The `ashiato` command. Headless subcommands print rows (table, csv, jsonl); anything else opens
the TUI. Textual is imported only when the TUI starts, so scripted use starts fast."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBCOMMANDS = ("ingest", "stats", "query", "sql", "export", "demo", "sessions", "logons", "tree", "findings",
               "rules", "coverage")
# Commands whose positional filter may start with an exclusion (`-eid:4624`).
FILTER_COMMANDS = ("query", "export", "sessions", "tree", "logons", "findings")
DEFAULT_CASE = "ashiato-case.duckdb"
QUERY_COLUMNS = ["ts", "host", "channel", "event_id", "record_id", "summary", "user", "process", "eid"]


def _out_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table",
                   help="table for people, csv or jsonl (one JSON object per row) for scripts")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ashiato", allow_abbrev=False,
        description="Follow an attacker's footprints through Windows event logs. "
                    "`ashiato CASE.duckdb` opens a case; `ashiato FILES/DIRS…` ingests them into "
                    f"./{DEFAULT_CASE} and opens it.")
    sub = ap.add_subparsers(dest="command")

    p = sub.add_parser("ingest", help="add EVTX / JSON exports (files or directories, .gz too) to a case")
    p.add_argument("case")
    p.add_argument("paths", nargs="+")
    p.add_argument("--parser", choices=("evtx", "python-evtx"), default="evtx",
                   help="EVTX parser: the Rust `evtx` package (default) or pure-Python python-evtx")
    p.add_argument("--no-dedupe", action="store_true",
                   help="store every event even when the same file or event is already in the case")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="DuckDB's memory limit for the ingest (e.g. 256MB, 2GB; default 512MB, raised to 2GB "
                        "for Sigma passes unless given): past it, work spills to the temp directory")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another process has the case open (the TUI, another ingest), wait up to "
                        "SECONDS for it to close it instead of stopping at once")

    p = sub.add_parser("stats", help="what is in a case, and what was skipped and why")
    p.add_argument("case")
    _out_format(p)

    p = sub.add_parser("query", help="events matching a filter, in timeline order")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="")
    p.add_argument("--limit", type=int, default=100, help="rows to print (0: all)")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--columns", help="comma-separated columns (default: a readable selection)")
    _out_format(p)

    p = sub.add_parser("sql", help="run SQL on a case, opened read-only")
    p.add_argument("case")
    p.add_argument("sql")
    _out_format(p)

    p = sub.add_parser("export", help="write matching events with every original field")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="")
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), default="parquet")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--marked", action="store_true", help="only events marked in the TUI")
    p.add_argument("--force", action="store_true", help="replace the --output file if it exists")

    p = sub.add_parser("sessions", help="logon sessions (host, boot, LogonId), newest activity first")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="",
                   help="the filter language over session columns: user:alice host:DC01 type:3,10 privileged:yes "
                        "flag:ntlm after:… (see `ashiato sessions --columns`)")
    p.add_argument("--by", choices=("session", "user", "edge"), default="session",
                   help="session (default), user: a summary per account, edge: who logged on where from where")
    p.add_argument("--format", choices=("table", "csv", "jsonl", "graphml", "dot"), default="table",
                   help="table for people, csv or jsonl for scripts; graphml or dot for --by edge")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--force", action="store_true", help="replace the --output file if it exists")
    p.add_argument("--limit", type=int, default=None,
                   help="rows to print (0: all; default 100 in a table, all in csv/jsonl)")

    p = sub.add_parser("logons", help="failed logons grouped by account and source, with brute-force, "
                                      "spraying and lockout verdicts")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="",
                   help="the filter language over the verdicts and groups: user:alice ip:10.0.0.5 host:DC01 "
                        "verdict:password_spray kind:verdict count:>10 after:… words")
    p.add_argument("--failed", action="store_true", help="the failed logons (the only view for now; the default)")
    p.add_argument("--thresholds", help="a thresholds TOML file over the defaults and the user's")
    _out_format(p)

    p = sub.add_parser("tree", help="process trees (Sysmon 1 and 4688, one node per process), each link "
                                    "with how it was made")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="",
                   help="the filter language over processes: image:mimikatz.exe user:alice cmd:*-enc* mark:lolbin "
                        "edge:unresolved after:… (the matches are drawn under their ancestors)")
    p.add_argument("--host", help="the forest of one host")
    p.add_argument("--process", help="one process (ProcessGuid or HOST/BOOT/0xPID/NODE): its ancestors, "
                                     "then everything it started")
    p.add_argument("--format", choices=("text", "jsonl", "csv", "table"), default="text",
                   help="text draws the tree; jsonl / csv have one process a line (jsonl: the output contract)")
    p.add_argument("--ascii", action="store_true", help="draw with ASCII only (also when NO_COLOR is set)")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--force", action="store_true", help="replace the --output file if it exists")
    p.add_argument("--limit", type=int, default=None, help="processes to print (default all)")

    from .cli_findings import add_parsers

    add_parsers(sub, _out_format)

    p = sub.add_parser("demo", help="build the bundled demo case (a generated incident) and open it")
    p.add_argument("--case", default="ashiato-demo.duckdb")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-tui", action="store_true", help="only build the case and print its stats")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in SUBCOMMANDS and not args_list[0].startswith("-"):
        return _open_tui(args_list)
    ap = build_parser()
    # A filter may start with an exclusion (`-eid:4624 user:bob`, `-host:WS01`), which argparse
    # would take for an option (`-h…` for --help): such words are the filter's, set aside first.
    excluded: list[str] = []
    if args_list and args_list[0] in FILTER_COMMANDS:
        args_list, excluded = _split_exclusions(args_list)
    args = ap.parse_args(args_list)
    if excluded:
        args.filter = " ".join([*excluded, args.filter] if args.filter else excluded)
    if args.command is None:
        ap.print_help()
        return 0
    try:
        from . import cli_findings

        handler = globals().get(f"cmd_{args.command}") or getattr(cli_findings, f"cmd_{args.command}")
        return int(handler(args))
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except BrokenPipeError:
        return 0
    except _UserError as exc:
        print(f"ashiato: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Ctrl-C during a DuckDB statement on this thread (ordering the new events, say) comes out
        # of DuckDB as a "Query interrupted" error instead of KeyboardInterrupt.
        if type(exc).__name__ == "InterruptException" or (
                isinstance(exc, RuntimeError) and "Query interrupted" in str(exc)):
            return _interrupted(args.command)
        raise


# Options of query/export, and those that take the next word as their value.
_OPTIONS = {"-h", "--help", "--limit", "--offset", "--columns", "--format", "-o", "--output", "--marked",
            "--by", "--force", "--failed", "--thresholds", "--host", "--process", "--ascii", "--rule",
            "--min-severity", "--rules", "--sigma"}
_TAKES_VALUE = {"--limit", "--offset", "--columns", "--format", "-o", "--output", "--by", "--thresholds",
                "--host", "--process", "--rule", "--min-severity", "--rules", "--sigma"}


def _split_exclusions(argv: list[str]) -> tuple[list[str], list[str]]:
    """The words of a filter command line that make its filter, apart from the command, the case,
    the options and their values: terms starting with "-" (`-eid:4624`, `-mimikatz`, `-"net user"`),
    which argparse would take for options, and terms after an option (`logons CASE --failed
    kind:verdict`), which it would refuse."""
    kept: list[str] = []
    terms: list[str] = []
    value_next = False
    positionals = 0
    for word in argv:
        name = word.split("=", 1)[0]
        if value_next or name in _OPTIONS or word == "-" or word.startswith("--"):
            kept.append(word)
            value_next = not value_next and name in _TAKES_VALUE and "=" not in word
        elif not word.startswith("-") and positionals < 2:  # the command, then the case
            kept.append(word)
            positionals += 1
        else:
            terms.append(word)
            value_next = False
    return kept, terms


class _UserError(Exception):
    pass


def _interrupted(command: str) -> int:
    if command in ("ingest", "demo"):
        print("interrupted: files already committed are kept; run the same command again to complete",
              file=sys.stderr)
    else:
        print("interrupted", file=sys.stderr)
    return 130


# -- ingest -------------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from engine import Case, CaseBusy, CaseError
    from engine.ingest import ingest

    if Path(args.case).exists():
        # The case comes first: `ingest logs.evtx case.duckdb` must not try to open the evidence.
        problem = _not_a_case(args.case)
        if problem:
            raise _UserError(problem)
    def waiting(busy: CaseBusy) -> None:
        print(f"ashiato: waiting for {busy.holder} to release {args.case}…", file=sys.stderr)

    try:
        options = {"memory_limit": _memory_limit(args.memory_limit)} if args.memory_limit else {}
        case = Case(args.case, wait=args.wait, on_wait=waiting, **options)
    except CaseBusy as exc:
        raise _UserError(f"{exc} (or ingest with --wait SECONDS to wait for it)") from exc
    except CaseError as exc:
        raise _UserError(str(exc)) from exc
    import duckdb

    with case:
        try:
            report = _run_ingest(case, args.paths, parser=args.parser, dedupe=not args.no_dedupe,
                                 quiet=args.quiet, ingest=ingest)
        except duckdb.OutOfMemoryException as exc:
            raise _UserError(f"{args.case}: the ingest ran out of memory at a limit of {case.memory_limit} "
                             f"({str(exc).splitlines()[0]}); the files committed before it are kept: run it again "
                             "with a higher --memory-limit") from exc
    _print_ingest_report(report)
    return 2 if report.missing and not report.files else 0


MIN_MEMORY_LIMIT_MB = 128  # below this the normalising of one batch does not fit (64MB failed on the corpus)


def _memory_limit(text: str) -> str:
    """A --memory-limit as DuckDB reads it (128MB, 1.5GB, 2GiB), refused below MIN_MEMORY_LIMIT_MB."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", text, re.I)
    if not m:
        raise _UserError(f"--memory-limit {text!r}: a size like 256MB or 2GB")
    size = float(m.group(1)) * (1024.0 if m.group(3) else 1000.0) ** " KMGT".index(m.group(2).upper() or " ")
    if size < MIN_MEMORY_LIMIT_MB * 1e6:
        raise _UserError(f"--memory-limit {text}: at least {MIN_MEMORY_LIMIT_MB}MB (one batch of events is "
                         "normalised in memory)")
    return text.strip()


def _run_ingest(case: Any, paths: list[str], *, parser: str, dedupe: bool, quiet: bool, ingest: Any) -> Any:
    if quiet or not sys.stderr.isatty():
        return ingest(case, paths, parser=parser, dedupe=dedupe)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]ingest"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[files]}"), TextColumn("{task.fields[records]} records"),
                  TextColumn("{task.fields[rate]} rec/s"), TimeRemainingColumn(),
                  transient=True, console=_stderr_console()) as bar:
        task = bar.add_task("ingest", total=1, files="", records=0, rate=0)

        def on_progress(p: Any) -> None:
            rate = int(p.records / p.elapsed) if p.elapsed > 0 else 0
            bar.update(task, total=max(1, p.bytes_total), completed=p.bytes_done,
                       files=f"file {p.file_index + 1}/{p.files_total}", records=f"{p.records:,}",
                       rate=f"{rate:,}")

        return ingest(case, paths, parser=parser, dedupe=dedupe, on_progress=on_progress)


def _print_ingest_report(report: Any) -> None:
    # Paths and messages are shown escaped: a file name can carry terminal escape sequences too.
    err = sys.stderr
    for path in report.missing:
        print(f"{_cell(path, 400)}: no such file or directory", file=err)
    for problem in report.unreadable:
        print(_cell(problem, 600), file=err)
    repeated = [f for f in report.files if f.status == "already in case"]
    for f in repeated if len(repeated) <= 10 else []:
        print(f"{_cell(f.path, 400)}: already in case ({_cell(f.message or '', 400)})", file=err)
    for f in report.files:
        if f.status == "skipped":
            print(_cell(f.message or f.path + ": skipped", 600), file=err)
        elif f.skipped or f.problems:
            head = (f"{f.skipped} damaged record(s) or line(s) skipped, {f.records} stored" if f.skipped
                    else f"{f.records} stored, with a note")
            print(f"{_cell(f.path, 400)}: {head}", file=err)
            for p in f.problems[:5]:
                print(f"  {_cell(str(p), 400)}", file=err)
            if len(f.problems) > 5:
                print(f"  … {len(f.problems) - 5} more in `ashiato stats`", file=err)
    ingested = sum(1 for f in report.files if f.status == "ingested")
    already = sum(1 for f in report.files if f.status == "already in case")
    skipped = sum(1 for f in report.files if f.status == "skipped")
    rate = report.records / report.seconds if report.seconds else 0
    print(f"{ingested} file(s) ingested, {already} already in case, {skipped} skipped; "
          f"{report.records:,} events stored, {report.duplicates:,} duplicates, "
          f"{report.skipped:,} damaged records/lines skipped; {report.seconds:.1f}s ({rate:,.0f} events/s)")


# -- stats --------------------------------------------------------------------------------------------
def _shown_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return relative if len(relative) < len(path) and not relative.startswith("../..") else path


def cmd_stats(args: argparse.Namespace) -> int:
    cur = _open_read_only(args.case)
    summary = cur.execute("""SELECT count(*), min(ts) FILTER (WHERE ts > TIMESTAMP '1601-01-02'), max(ts),
                                    count(DISTINCT host), count(DISTINCT channel) FROM events""").fetchall()[0]
    n, lo, hi, hosts, channels = summary
    if args.format != "table":
        rows = _dicts(cur.execute("""SELECT source_id, path, shape, parser, records, duplicates, skipped,
                                            first_error, bytes, seconds, sha256 FROM sources ORDER BY source_id"""))
        _emit(rows, list(rows[0].keys()) if rows else ["path"], args.format)
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    con = Console()
    con.print(Text(f"{args.case}: {n:,} events, {hosts} host(s), {channels} channel(s), "
                   f"{lo} … {hi} UTC"))
    for title, sql in (
        # ETW traces saved as EVTX have no channel: "(none)", not a blank that reads as a glitch.
        ("Hosts", "SELECT coalesce(host, '(none)') AS host, count(*) AS events FROM events GROUP BY ALL "
                  "ORDER BY 2 DESC LIMIT 20"),
        ("Channels", "SELECT coalesce(channel, '(none)') AS channel, count(*) AS events FROM events GROUP BY ALL "
                     "ORDER BY 2 DESC LIMIT 20"),
        ("Top event IDs", "SELECT coalesce(channel, '(none)') AS channel, event_id, count(*) AS events FROM events "
                          "GROUP BY ALL ORDER BY 3 DESC LIMIT 15"),
    ):
        _print_table(con, title, _dicts(cur.execute(sql)), Table, Text)
    src = _dicts(cur.execute("""SELECT count(*) AS files, sum(records) AS events, sum(duplicates) AS duplicates,
                                       sum(skipped) AS skipped, string_agg(DISTINCT shape, ', ') AS shapes
                                FROM sources"""))
    _print_table(con, "Sources", src, Table, Text)
    bad = _dicts(cur.execute("""SELECT path, records, skipped, first_error FROM sources
                                WHERE skipped > 0 OR first_error IS NOT NULL ORDER BY path"""))
    for row in bad:  # stored absolute; shown relative to here when that is shorter
        row["path"] = _shown_path(row["path"])
    if bad:
        _print_table(con, "Skipped or damaged (see ingest_errors for each location)", bad, Table, Text)
    unread = _dicts(cur.execute("SELECT path, message FROM ingest_errors WHERE source_id IS NULL ORDER BY path"))
    for row in unread:
        row["path"] = _shown_path(row["path"])
        message = str(row["message"] or "")  # "PATH: cannot …": the path is its own column
        row["message"] = message[message.rfind(": cannot ") + 2:] if ": cannot " in message else message
    if unread:
        _print_table(con, "Not read (nothing of these is in the case)", unread, Table, Text)
    return 0


def _print_table(console: Any, title: str, rows: list[dict[str, Any]], Table: Any, Text: Any) -> None:
    if not rows:
        return
    t = Table(title=title, title_justify="left")
    for col in rows[0]:
        numeric = all(isinstance(r[col], int) for r in rows if r[col] is not None)
        t.add_column(col, overflow="fold", justify="right" if numeric else "left")
    for r in rows:
        t.add_row(*[Text(f"{v:,}" if isinstance(v, int) and k in ("events", "records", "duplicates", "skipped", "files")
                         else _cell(v)) for k, v in r.items()])
    console.print(t)


# -- query / sql / export ----------------------------------------------------------------------------
def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from engine import views
    from engine.filters import FilterError
    from engine.schema import EVENT_COLUMN_NAMES

    columns = args.columns.split(",") if args.columns else QUERY_COLUMNS
    unknown = [c for c in columns if c not in (*EVENT_COLUMN_NAMES, "summary", "user", "process")]
    if unknown:
        raise _UserError(f"unknown column(s): {', '.join(unknown)}")
    cur = _open_read_only(args.case)
    # One row more than asked for says whether there are more, without counting them all.
    limit = args.limit + 1 if args.limit else None
    try:
        if sys.stderr.isatty():
            rows = _query_with_progress(views, cur, args, limit)
        else:
            rows = views.query(cur, args.filter, limit=limit, offset=args.offset)
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except duckdb.Error as exc:
        raise _UserError(f"query failed: {exc}") from exc
    more = limit is not None and len(rows) > args.limit
    shown = rows[:args.limit] if more else rows
    if args.format == "table" and not args.columns:
        # Read like the timeline: one line an event, its columns by the same priority at this
        # width (time, id, host, summary first); internal ids only when asked for (--columns).
        from tui.widgets.columns import DEFAULT_COLUMNS
        from tui.widgets.rows import EventRows

        _print_layout(shown, DEFAULT_COLUMNS, EventRows({}).cell)
    else:
        _emit(shown, columns, args.format, events=True)
    if more:
        print(f"the first {args.limit} matching events; more match (--limit 0 prints all, "
              f"--offset {args.offset + args.limit} the next page)", file=sys.stderr)
    return 0


def _stderr_console() -> Any:
    # Progress goes to stderr, so it never mixes with rows or a report piped from stdout.
    from rich.console import Console

    return Console(stderr=True)


def _query_with_progress(views: Any, cur: Any, args: argparse.Namespace, limit: int | None) -> list[dict[str, Any]]:
    """A search of the original documents takes seconds on a large case: say how far it is."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("searching every field"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TimeElapsedColumn(), TextColumn("(Ctrl-C stops)"), transient=True, console=_stderr_console())
    task = bar.add_task("search", total=1.0)

    def progress(done: float) -> None:
        # Shown only once a search of the documents reports: a filter on typed columns never does.
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done)

    try:
        return views.query(cur, args.filter, limit=limit, offset=args.offset,  # type: ignore[no-any-return]
                           on_progress=progress)
    finally:
        bar.stop()


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from engine import notes

    # `marks`, `session_marks` and `saved_filters` read as the notes kept beside the case.
    cur = notes.expose(_open_read_only(args.case))
    try:
        result = cur.execute(args.sql)
    except duckdb.Error as exc:
        raise _UserError(str(exc)) from exc
    rows = _dicts(result) if result.description else []
    _emit(rows, [d[0] for d in result.description or []], args.format)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import duckdb

    from engine import views
    from engine.filters import FilterError

    _writer(args)  # refuses to replace an existing file without --force
    cur = _open_read_only(args.case)
    try:
        n = views.export(cur, args.filter, args.output, args.format, marked_only=args.marked)
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except (duckdb.Error, OSError) as exc:
        raise _UserError(f"export failed: {exc}") from exc
    print(f"{n:,} events written to {args.output}", file=sys.stderr)
    return 0


# -- sessions and logons -------------------------------------------------------------------------------
# What scripts get: every column but the display ordinal.
SESSION_COLUMNS_OUT = ["host", "boot", "logon_id", "linked_logon_id", "user", "domain", "sid", "logon_type",
                       "logon_type_name", "auth_package", "logon_process", "lm_package", "key_length",
                       "elevated_token", "impersonation_level", "src_ip", "src_port", "workstation",
                       "logon_process_image", "privileged", "privileges", "sensitive_privileges", "start", "end",
                       "end_reason", "duration_s", "last_seen", "logons", "events", "processes", "explicit_uses",
                       "explicit_targets", "rdp_clients", "reconnects", "disconnects", "rdp_by_logon_id",
                       "rdp_by_account_time", "flags", "reasons",
                       "subject_sid", "first_eid", "session"]


def _print_layout(rows: list[dict[str, Any]], columns: list[str], cell: Any) -> None:
    """A table laid out as the TUI lays out its views (tui.widgets.columns.layout): one line a row,
    the columns that matter most kept at narrow widths, every cell escaped and cut to fit."""
    from tui.widgets.columns import fit_cell, host_width, layout, own_columns

    out = sys.stdout
    width = shutil.get_terminal_size((200, 24)).columns if out.isatty() else int(os.environ.get("COLUMNS", "200"))
    placed = layout(columns, width, {"host": host_width([r.get("host") for r in rows])} if "host" in columns else None,
                    own_columns(columns))

    def line(texts: list[str]) -> str:
        parts, x = [], 0
        for col, text in zip(placed, texts, strict=True):
            parts.append(" " * (col.x - x) + fit_cell(text, col.name, col.width).ljust(col.width))
            x = col.x + col.width
        return "".join(parts).rstrip()

    out.write(line([c.title for c in placed]) + "\n")
    for row in rows:
        out.write(line([cell(row, c.name, False) for c in placed]) + "\n")
    print(f"{len(rows)} row(s)", file=sys.stderr)


def _writer(args: argparse.Namespace) -> Any:
    """Standard output, or the --output file (never replacing one without --force)."""
    if not getattr(args, "output", None):
        return None
    path = Path(args.output)
    if path.exists() and not args.force:
        raise _UserError(f"{path} exists: give --force to replace it, or another -o")
    return path


def cmd_sessions(args: argparse.Namespace) -> int:
    import contextlib
    import io

    import duckdb

    from engine import logon_map, sessions
    from engine.filters import FilterError

    if args.format in ("graphml", "dot") and args.by != "edge":
        raise _UserError(f"--format {args.format} draws the logon graph: use it with --by edge")
    out_path = _writer(args)
    cur = _open_read_only(args.case)
    limit = args.limit if args.limit is not None else (100 if args.format == "table" else 0)
    try:
        if args.by == "edge":
            rows = logon_map.edges(cur, args.filter)
            columns = list(logon_map.EDGE_TYPES)
        elif args.by == "user":
            rows = logon_map.by_user(cur, args.filter)
            columns = list(logon_map.USER_TYPES)
        else:
            rows = sessions.query(cur, args.filter, limit=limit + 1 if limit else None)
            for r in rows:
                r["session"] = sessions.key_of(r).text()
            from tui.widgets.columns import SESSION_COLUMNS

            # The table lays the columns out as the sessions view does: by priority, as many as fit.
            columns = SESSION_COLUMNS if args.format == "table" else SESSION_COLUMNS_OUT
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except duckdb.Error as exc:
        raise _UserError(f"sessions failed: {exc}") from exc
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    buffer = io.StringIO() if out_path else None
    with contextlib.redirect_stdout(buffer) if buffer is not None else contextlib.nullcontext():
        if args.format == "graphml":
            sys.stdout.write(logon_map.graphml(rows))
        elif args.format == "dot":
            sys.stdout.write(logon_map.dot(rows))
        elif args.by == "session" and args.format == "table":
            from tui.widgets.rows import SessionRows

            _print_layout(rows, columns, SessionRows(set()).cell)
        else:
            _emit(rows, columns, args.format, hex_columns={"logon_id", "linked_logon_id"})
    if buffer is not None and out_path is not None:
        out_path.write_text(buffer.getvalue(), encoding="utf-8")
        print(f"{len(rows):,} rows written to {out_path}", file=sys.stderr)
    if more:
        print(f"the first {limit} sessions; more match (--limit 0 prints all)", file=sys.stderr)
    return 0


TREE_COLUMNS = ["key", "host", "boot", "start", "end", "end_reason", "pid", "image", "user", "logon_id", "edge",
                "parent_key", "parent_pid", "parent_image", "sources", "marks", "subtree_marks", "children",
                "events", "network", "files", "registry", "lsass_access", "integrity", "token_elevation",
                "mandatory_label", "hashes", "command_line"]


def cmd_tree(args: argparse.Namespace) -> int:
    import contextlib
    import io

    import duckdb

    from engine import lineage
    from engine.filters import FilterError
    from tui import tree_text

    out_path = _writer(args)
    cur = _open_read_only(args.case)
    focus: int | None = None
    try:
        if args.process:
            focus = lineage.find(cur, args.process)
            if focus is None:
                raise _UserError(f"no process {args.process!r} in {args.case} (a ProcessGuid, or HOST/BOOT/0xPID/NODE "
                                 "as `ashiato tree --format jsonl` prints in `key`)")
            up = lineage.ancestors(cur, focus)[:-1]
            rows = [{**r, "depth": i} for i, r in enumerate(up)]
            rows += [{**r, "depth": r["depth"] + len(up)} for r in lineage.descendants(cur, focus)]
        else:
            compiled = lineage.compile_process_filter(args.filter)
            where, params = compiled.sql, list(compiled.params)
            if args.host:
                where += " AND (lower(e.host) = lower(?) OR starts_with(lower(e.host), lower(?) || '.'))"
                params += [args.host, args.host]
            # Tree order with depths; a filter's matches are drawn under their ancestors in text,
            # and are the only rows of jsonl / csv / table.
            rows = lineage.forest(cur, where, params)
            if args.format != "text" and (args.filter or args.host):
                rows = [r for r in rows if r["matched"]]
            if not rows and args.host and not cur.execute(
                    "SELECT count(*) FROM processes WHERE lower(host) = lower(?) OR starts_with(lower(host), "
                    "lower(?) || '.')", [args.host, args.host]).fetchall()[0][0]:
                known = ", ".join(h for h, _ in lineage.hosts(cur)) or "none"
                raise _UserError(f"no processes on host {args.host!r} (hosts with processes: {known})")
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except duckdb.CatalogException as exc:
        raise _UserError(f"{args.case} has no process table yet: open it once read-write "
                         f"(`ashiato {args.case}` or `ashiato ingest`) to build it ({exc})") from exc
    if args.limit:
        rows = rows[: args.limit]
    problem = lineage.marks_problem(cur)
    if problem:
        print(f"ashiato: the process marks file was not used ({problem}); the project's marks were", file=sys.stderr)
    buffer = io.StringIO() if out_path else None
    with contextlib.redirect_stdout(buffer) if buffer is not None else contextlib.nullcontext():
        if args.format == "text":
            out = sys.stdout
            width = (shutil.get_terminal_size((200, 24)).columns if out.isatty()
                     else int(os.environ.get("COLUMNS", "200")))
            ascii_only = args.ascii or "NO_COLOR" in os.environ
            for text in tree_text.draw(rows, width, ascii_only=ascii_only, focus=focus):
                if ascii_only:
                    text = text.replace("…", "~")  # the cut marks too: nothing but ASCII drawn
                out.write(text + "\n")
            print(f"{len(rows)} process(es); links by ProcessGuid unless noted", file=sys.stderr)
        else:
            keys = lineage.parent_keys(cur, rows)
            extra = lineage.attributes(cur, rows) if args.format in ("jsonl", "csv") else {}
            shaped = [lineage.contract(r, keys.get(r["parent"]) if r.get("parent") is not None else None,
                                       extra.get(int(r["node"])))
                      for r in rows]
            columns = list(shaped[0]) if shaped and args.format == "jsonl" else TREE_COLUMNS
            if args.format == "table":
                from tui.widgets.columns import PROCESS_COLUMNS, short_host

                def cell(row: dict[str, Any], column: str, _selected: bool) -> str:
                    if column == "start":
                        return tree_text.when(row["start"])
                    if column == "name":
                        return _cell(tree_text.image_name(row["image"]))
                    if column == "host":
                        return _cell(short_host(row["host"]))
                    if column == "marks":
                        return _cell("; ".join(row["marks"] or []))
                    return _cell(row.get(column))

                _print_layout(shaped, PROCESS_COLUMNS, cell)
            else:
                _emit(shaped, columns, args.format)
    if buffer is not None and out_path is not None:
        out_path.write_text(buffer.getvalue(), encoding="utf-8")
        print(f"{len(rows):,} processes written to {out_path}", file=sys.stderr)
    return 0


def cmd_logons(args: argparse.Namespace) -> int:
    import duckdb

    from engine import logons
    from engine.filters import FilterError

    try:
        thresholds = logons.load_thresholds(logons.DEFAULT_THRESHOLDS, logons.user_thresholds_path(),
                                            Path(args.thresholds) if args.thresholds else None)
    except logons.ThresholdError as exc:
        raise _UserError(str(exc)) from exc
    if args.thresholds and not Path(args.thresholds).is_file():
        raise _UserError(f"{args.thresholds}: no such thresholds file")
    cur = _open_read_only(args.case)
    try:
        verdicts = logons.verdicts(cur, thresholds)
        groups = logons.groups(cur)
        if args.filter:
            kept = {id(r) for r in logons.filter_rows(verdicts + groups, args.filter)}
            verdicts = [v for v in verdicts if id(v) in kept]
            groups = [g for g in groups if id(g) in kept]
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except duckdb.Error as exc:
        raise _UserError(f"logons failed: {exc}") from exc
    if args.format == "table":
        from tui.safe_text import escape
        from tui.widgets.columns import short_host

        for v in verdicts:
            print(f"{v['verdict'].upper().replace('_', ' ')}: {escape(v['reason'])} "
                  f"[{v['first']:%Y-%m-%d %H:%M:%S} – {v['last']:%H:%M:%S}, {len(v['eids'])} events]")
        if verdicts:
            print()
        shown = []
        for g in groups:
            why = "; ".join(f"{logons.code_text(s['status'], s['substatus'])} {s['meaning']} ×{s['count']}"
                            for s in g["statuses"][:2])
            hosts = " ".join(short_host(h) for h in g["hosts"][:2]) + (" …" if len(g["hosts"]) > 2 else "")
            shown.append({**g, "hosts": hosts, "event_ids": " ".join(map(str, g["event_ids"])),
                          "first": f"{g['first']:%Y-%m-%d %H:%M:%S}",
                          "why": why})
        _print_layout(shown, ["count", "account", "source", "first", "hosts", "event_ids", "why"],
                      lambda row, column, _local: _cell(row.get(column)))
        return 0
    columns = ["kind", "verdict", "account", "accounts", "source", "sources", "host", "hosts", "count", "first",
               "last", "eids", "session", "reason", "user", "domains", "event_ids", "logon_types", "statuses"]
    rows = [{**v, "hosts": v.get("hosts", [v["host"]] if v.get("host") else [])} for v in verdicts] + groups
    _emit(rows, columns, args.format)
    return 0


# -- demo ---------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from engine import Case
    from engine.ingest import ingest
    from fixtures.incident import incident
    from fixtures.shapes import write_all

    case_path = Path(args.case)
    if case_path.exists():
        case_path.unlink()
    wal = Path(str(case_path) + ".wal")
    if wal.exists():
        wal.unlink()
    # The generated exports stay beside the case: its sources table points at them.
    files = case_path.with_name(case_path.stem + "-files")
    if files.exists():
        shutil.rmtree(files)
    files.mkdir(parents=True)
    write_all(incident(seed=args.seed), files)
    t0 = time.perf_counter()
    with Case(case_path) as case:
        report = ingest(case, [files])
    print(f"demo case {case_path}: {report.records:,} events from {len(report.files)} generated files "
          f"({report.duplicates:,} copies of the same events in other shapes) in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    if args.no_tui or not sys.stdout.isatty():
        return cmd_stats(argparse.Namespace(case=str(case_path), format="table"))
    return _open_tui([str(case_path)])


# -- the TUI ------------------------------------------------------------------------------------------
def _open_tui(args: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ashiato", description="open a case, or ingest files and open them")
    ap.add_argument("paths", nargs="+", help="a case file (.duckdb), or evidence files/directories")
    ap.add_argument("--case", default=DEFAULT_CASE, help="case file to ingest into")
    ap.add_argument("--keymap", help="a keymap TOML file layered over the defaults")
    ns = ap.parse_args(args)
    from tui.app import run_app

    if len(ns.paths) == 1 and _is_case(ns.paths[0]):
        run_app(ns.paths[0], keymap_path=ns.keymap)
    else:
        run_app(ns.case, keymap_path=ns.keymap, ingest_paths=ns.paths)
    return 0


def _is_case(path: str) -> bool:
    p = Path(path)
    if p.suffix == ".duckdb":
        return True
    if p.is_file():
        with open(p, "rb") as f:
            return f.read(16)[8:12] == b"DUCK"
    return False


# -- output helpers -------------------------------------------------------------------------------
def _not_a_case(path: str) -> str | None:
    """Why `path` cannot be a case, in a responder's words, or None when it may be one."""
    p = Path(path)
    if not p.exists():
        return f"{path}: no such case file (make one with `ashiato ingest {path} EVIDENCE…`)"
    if p.is_dir():
        return (f"{path} is a directory, not a case: to explore the logs in it, `ashiato {path}` (ingests them "
                f"into ./ashiato-case.duckdb) or `ashiato ingest CASE.duckdb {path}`")
    with open(p, "rb") as f:
        head = f.read(16)
    if head[8:12] == b"DUCK":
        return None
    kind = ("an EVTX log" if head.startswith(b"ElfFile") else "gzip data" if head.startswith(b"\x1f\x8b")
            else "JSON" if head.lstrip()[:1] in (b"{", b"[") else "not a DuckDB file")
    return (f"{path} is {kind}, not a case: cases are made by `ashiato ingest CASE.duckdb {path}` "
            f"(the case comes first), then `ashiato query CASE.duckdb …`")


def _open_read_only(path: str) -> Any:
    from engine import Case, CaseBusy, CaseError

    problem = _not_a_case(path)
    if problem:
        raise _UserError(problem)
    try:
        case = Case(path, read_only=True)
        if case.needs_repair():
            # After an interrupted ingest, opening the case read-write once drops the files it
            # left part-way and orders the rest; then reading goes on read-only. While another
            # process reads it (the TUI), it is read as it is.
            case.close()
            with contextlib.suppress(CaseBusy):
                Case(path).close()
            case = Case(path, read_only=True)
        return case.cursor()
    except CaseError as exc:
        raise _UserError(str(exc)) from exc


def _dicts(result: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def _cell(value: Any, width: int = 200) -> str:
    """Event text is data: control and bidi characters shown escaped, long values cut for display."""
    from tui.safe_text import escape

    return escape(value, limit=width)


def _hex_cell(value: Any) -> str:
    return f"0x{value:x}" if isinstance(value, int) else _cell(value)


def _emit(rows: list[dict[str, Any]], columns: list[str], fmt: str, *, events: bool = False,
          hex_columns: set[str] | frozenset[str] = frozenset()) -> None:
    """Rows out in `fmt`. csv and jsonl carry the stored values; the table is for reading, so
    event columns (`events`) Windows writes in hex (NTSTATUS, access masks, LogonIds) show in hex."""
    out = sys.stdout
    if fmt == "jsonl":
        import orjson

        from tui.safe_text import json_safe

        for r in rows:
            out.write(json_safe(orjson.dumps({c: r.get(c) for c in columns}, default=str,
                                             option=orjson.OPT_NON_STR_KEYS).decode()) + "\n")
    elif fmt == "csv":
        # Piped, the values go out as stored; printed to a terminal, control characters in event
        # text are shown escaped instead of being obeyed (clear screen, set the clipboard…).
        from tui.safe_text import escape

        def raw(v: Any) -> Any:
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return " ".join(v)  # flags, privileges, hosts: one cell, as a shell reads words
            if isinstance(v, list | dict):
                import orjson

                return orjson.dumps(v, default=str).decode()
            return "" if v is None else v

        def shown(v: Any) -> Any:
            v = raw(v)
            return escape(v, limit=None) if isinstance(v, str) else v

        cell = shown if out.isatty() else raw
        w = csv.writer(out, lineterminator="\n")  # as DuckDB writes CSV: Unix pipes carry no \r
        w.writerow([cell(c) for c in columns])
        for r in rows:
            w.writerow([cell(r.get(c)) for c in columns])
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        width = None if out.isatty() else int(os.environ.get("COLUMNS", "200"))
        console = Console(width=width)
        t = Table(show_lines=False)
        for c in columns:
            t.add_column(c, overflow="ellipsis", no_wrap=c != "summary")
        from tui.widgets.columns import HEX_COLUMNS

        hex_columns = (HEX_COLUMNS if events else frozenset()) | hex_columns
        for r in rows:
            t.add_row(*[Text(_hex_cell(r.get(c)) if c in hex_columns else _cell(r.get(c))) for c in columns])
        console.print(t)
        print(f"{len(rows)} row(s)", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
