"""`ashiato findings`, `ashiato rules list|show` and `ashiato coverage`: the faces of
engine.findings on the command line (tui/cli.py dispatches to them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FINDING_CONTRACT = ["id", "rule", "title", "severity", "attack", "host", "user", "first", "last", "count",
                    "reason", "eids", "session", "process", "values"]


def add_parsers(sub: Any, out_format: Any) -> None:
    p = sub.add_parser("findings", help="where to look first: the rules' findings, worst first, each with why")
    p.add_argument("case")
    p.add_argument("filter", nargs="?", default="",
                   help="the filter language over findings: rule:lsass-access host:WS07 user:alice "
                        "severity:high attack:T1003* after:… words")
    p.add_argument("--rule", help="one rule's findings (its id)")
    p.add_argument("--min-severity", choices=("informational", "low", "medium", "high", "critical"))
    p.add_argument("--rules", help="a rules directory over the project's and the user's")
    p.add_argument("--sigma", action="append", metavar="DIR",
                   help="Sigma rules (a SigmaHQ checkout's rules/windows, or your own); repeatable")
    p.add_argument("--placeholders", metavar="FILE", help="values for Sigma placeholders (TOML: name = [values])")
    out_format(p)

    p = sub.add_parser("rules", help="the finding rules: list them (with any that failed to load), or show one")
    rsub = p.add_subparsers(dest="rules_command", required=True)
    q = rsub.add_parser("list", help="every rule, enabled or not, its source file; failures with the reason")
    q.add_argument("--rules", help="a rules directory over the project's and the user's")
    q.add_argument("--sigma", action="append", metavar="DIR", help="Sigma rules to list too (loaded / skipped / failed)")
    q.add_argument("--placeholders", metavar="FILE", help="values for Sigma placeholders (TOML: name = [values])")
    out_format(q)
    q = rsub.add_parser("show", help="one rule: what it reads, how it groups, its allowlist and references")
    q.add_argument("rule")
    q.add_argument("--rules", help="a rules directory over the project's and the user's")
    q.add_argument("--sigma", action="append", metavar="DIR", help="Sigma rules to look in")

    p = sub.add_parser("coverage", help="what the logs can and cannot show, per host")
    p.add_argument("case")
    p.add_argument("--host", help="one host")
    out_format(p)


def _rules(args: argparse.Namespace) -> Any:
    from engine import findings

    from .cli import _UserError

    extra = Path(args.rules) if getattr(args, "rules", None) else None
    if extra is not None and not extra.is_dir():
        raise _UserError(f"{extra}: no such rules directory")
    sigma = [Path(d).expanduser() for d in getattr(args, "sigma", None) or []]
    for d in sigma:
        if not d.is_dir():
            raise _UserError(f"{d}: no such Sigma directory")
    values = Path(args.placeholders) if getattr(args, "placeholders", None) else None
    if values is not None and not values.is_file():
        raise _UserError(f"{values}: no such placeholders file")
    return findings.load(extra, sigma=sigma, placeholders=values)


def cmd_findings(args: argparse.Namespace) -> int:
    import duckdb

    from engine import findings
    from engine.filters import FilterError

    from .cli import _emit, _open_read_only, _print_layout, _UserError

    rules = _rules(args)
    if args.rule and rules.get(args.rule) is None:
        from engine.findings.rules import _suggest

        raise _UserError(f"no rule {args.rule!r}{_suggest(args.rule, [r.id for r in rules.rules])} "
                         "(ashiato rules list shows them)")
    cur = _open_read_only(args.case)
    try:
        failed = findings.ensure(cur, rules)
        rows = findings.listing(cur, rule=args.rule, min_severity=args.min_severity)
        if args.filter:
            compiled = findings.compile_finding_filter(args.filter)
            kept = {int(r[0]) for r in cur.execute(f"SELECT id FROM findings e WHERE {compiled.sql}",
                                                   compiled.params).fetchall()}
            rows = [r for r in rows if r["id"] in kept]
    except FilterError as exc:
        raise _UserError(f"{exc}\n{exc.caret(args.filter)}") from exc
    except duckdb.Error as exc:
        raise _UserError(f"findings failed: {exc}") from exc
    for why in failed:
        print(f"ashiato: rule not run: {why}", file=sys.stderr)
    if args.format == "table":
        from .safe_text import escape
        from .widgets.columns import short_host

        shown = [{**r, "severity": r["severity"][:4], "first": f"{r['first']:%Y-%m-%d %H:%M:%S}",
                  "host": short_host(r["host"]), "attack": " ".join(r["attack"] or [])} for r in rows]
        _print_layout(shown, ["severity", "first", "host", "rule", "user", "count", "reason", "attack"],
                      lambda row, column, _local: escape("" if row.get(column) is None else str(row[column])))
        return 0
    out = [findings.contract(cur, r) for r in rows]
    _emit(out, FINDING_CONTRACT, args.format)
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from .cli import _emit, _print_layout, _UserError
    from .safe_text import escape

    rules = _rules(args)
    if args.rules_command == "show":
        rule = rules.get(args.rule)
        if rule is None:
            from engine.findings.rules import _suggest

            raise _UserError(f"no rule {args.rule!r}{_suggest(args.rule, [r.id for r in rules.rules])}")
        lines = [f"{rule.id}: {rule.title}", f"  severity  {rule.severity}{'' if rule.enabled else ' (disabled)'}",
                 f"  att&ck    {' '.join(rule.attack) or '-'}", f"  file      {rule.source}"]
        if rule.description:
            lines.append(f"  about     {rule.description}")
        if rule.sigma_condition:
            lines.append(f"  reads     Sigma, as SQL: {rule.sigma_logsource}")
            lines.append(f"            AND {rule.sigma_condition}")
        else:
            lines.append(f"  reads     {'filter ' + rule.filter if rule.filter else 'SQL:'}")
        if rule.sql and not rule.sigma_condition:
            lines += [f"            {line}" for line in rule.sql.strip().splitlines()]
        lines.append(f"  groups    by {', '.join(rule.group_by)}"
                     + (f", a new finding after {rule.window} of quiet" if rule.window else ""))
        if rule.min_count > 1 or rule.min_distinct:
            lines.append(f"  needs     {rule.min_count} hit(s)"
                         + "".join(f", {n} distinct {c}" for c, n in rule.min_distinct))
        lines.append(f"  explains  {rule.reason}")
        for column, globs in rule.allow:
            lines.append(f"  allows    {column}: {', '.join(globs)}")
        for ref in rule.references:
            lines.append(f"  see       {ref}")
        print("\n".join(escape(line, limit=None) for line in lines))
        return 0
    for why in rules.failed:
        print(f"ashiato: failed to load: {why}", file=sys.stderr)
    rows = [{"rule": r.id, "severity": r.severity, "enabled": r.enabled, "title": r.title, "attack": list(r.attack),
             "source": r.source, "status": "enabled" if r.enabled else "disabled"} for r in rules.rules]
    rows += [{"rule": None, "severity": None, "enabled": False, "title": None, "attack": [], "source": why.split(":")[0],
              "status": f"failed: {why}"} for why in rules.failed]
    rows += [{"rule": None, "severity": None, "enabled": False, "title": None, "attack": [], "source": why.split(":")[0],
              "status": f"skipped: {why.split(': ', 1)[-1]}"} for why in rules.sigma_skipped]
    rows += [{"rule": None, "severity": None, "enabled": False, "title": None, "attack": [], "source": why.split(":")[0],
              "status": f"unsupported: {why.split(': ', 1)[-1]}"} for why in rules.sigma_unsupported]
    rows += [{"rule": None, "severity": None, "enabled": False, "title": None, "attack": [], "source": why.split(":")[0],
              "status": why.split(": ", 1)[-1]} for why in rules.sigma_waiting]
    if rules.sigma_dirs:
        print(f"Sigma: {rules.sigma_loaded:,} loaded, {len(rules.sigma_skipped):,} skipped (not Windows, or a "
              f"logsource not mapped), {len(rules.sigma_unsupported):,} unsupported, "
              f"{len(rules.sigma_waiting):,} waiting for a placeholder, "
              f"{sum(1 for f in rules.failed if '.yml' in f or '.yaml' in f):,} failed", file=sys.stderr)
    if args.format == "table":
        shown = [{**r, "severity": (r["severity"] or "")[:4], "title": r["title"] or r["status"],
                  "attack": " ".join(r["attack"]), "rule_status": r["status"].split(":")[0], "file": Path(r["source"]).name}
                 for r in rows]
        _print_layout(shown, ["severity", "rule", "rule_status", "title", "file", "attack"],
                      lambda row, column, _local: escape("" if row.get(column) is None else str(row[column])))
        return 0
    _emit(rows, ["rule", "severity", "enabled", "status", "title", "attack", "source"], args.format)
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    import duckdb

    from engine.findings import coverage

    from .cli import _emit, _open_read_only, _UserError
    from .safe_text import escape

    cur = _open_read_only(args.case)
    try:
        report = coverage.report(cur, _rules(argparse.Namespace(rules=None)).enabled, host=args.host)
    except duckdb.Error as exc:
        raise _UserError(f"coverage failed: {exc}") from exc
    if args.host and not report:
        raise _UserError(f"no host {args.host!r} in the case")
    if args.format == "table":
        for host in report:
            print(escape(f"{host['host']}: {host['events']:,} events, {host['first']:%Y-%m-%d %H:%M} – "
                         f"{host['last']:%Y-%m-%d %H:%M}", limit=None))
            for line in coverage.lines(host):
                print(escape(f"  {line}", limit=None))
            print()
        return 0
    _emit(report, ["host", "events", "first", "last", "channels", "key_events", "process_command_lines",
                   "sysmon_ids", "lsass_audit", "gaps", "not_visible", "visible_rules"], args.format)
    return 0
