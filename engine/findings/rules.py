"""Finding rules as data: TOML files of `[[rule]]` tables, validated strictly.

The project's rules are in `rules/` at the top of the project; a user's rules directory (the
config dir's `rules/`, or `--rules DIR`) adds rules, replaces a project rule by using its id, or
switches one off (`enabled = false`). `allowlist.toml` in the user's directory extends a rule's
allowlist (`[RULE-ID]` then `field = ["glob", …]`), which is what `x` in the findings view writes.

A rule reads its hits with either `filter` (the timeline's filter language over events) or `sql`
(a SELECT over the case's tables: events, sessions, processes, boots, sources, and the temp table
`logon_verdicts`). A hit has `eid`, `ts`, `host`, `user`, optionally `logon_id` (its session) and
`process` (a node of `processes`), and any other columns the explanation names. A query that
returns `eids` (a list) gives findings already grouped, one per row.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_RULES = Path(__file__).resolve().parents[2] / "rules"
SEVERITIES = ("informational", "low", "medium", "high", "critical")
GROUP_KEYS = ("host", "user", "logon_id", "process", "source", "value")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_WINDOW = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")

# key: (type, required, what it is)
RULE_KEYS: dict[str, tuple[type | tuple[type, ...], bool, str]] = {
    "id": (str, True, "lower-case id, unique"),
    "title": (str, True, "one line"),
    "severity": (str, True, "|".join(SEVERITIES)),
    "attack": (list, False, "ATT&CK technique ids"),
    "description": (str, False, "what it means and how to judge it"),
    "references": (list, False, "links"),
    "needs": (list, False, "CHANNEL:EID the rule reads (for the coverage report)"),
    "filter": (str, False, "the filter language over events"),
    "fields": (list, False, "event columns a filter rule keeps for the explanation"),
    "sql": (str, False, "SELECT eid, ts, host, user, … over the case"),
    "group_by": (list, False, "|".join(GROUP_KEYS) + " or a hit column"),
    "window": (str, False, "e.g. 10m: a gap longer than this starts a new finding"),
    "min_count": (int, False, "hits a finding needs"),
    "min_distinct": (dict, False, "{column = N}: distinct values a finding needs"),
    "reason": (str, True, "explanation template: {count} {host} {user} {first} {last} {column} {column|filter}"),
    "allow": (dict, False, "{column = [glob, …]}: hits to leave out"),
    "enabled": (bool, False, "false switches the rule off"),
    "scope": (str, False, "host|case: whether a finding depends on one host's events only (the default when "
                          "group_by has host), so that adding another host's logs leaves it alone"),
}
SCOPES = ("host", "case")


class RuleError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    reason: str
    source: str  # the file it came from
    attack: tuple[str, ...] = ()
    description: str = ""
    references: tuple[str, ...] = ()
    needs: tuple[tuple[str, int], ...] = ()
    filter: str | None = None
    fields: tuple[str, ...] = ()
    sql: str | None = None
    group_by: tuple[str, ...] = ("host",)
    window: timedelta | None = None
    min_count: int = 1
    min_distinct: tuple[tuple[str, int], ...] = ()
    allow: tuple[tuple[str, tuple[str, ...]], ...] = ()
    enabled: bool = True
    # "host": each finding reads one host's events, so an ingest recomputes it for the hosts its new
    # events are on only (store.update); "case": it reads across hosts (a spray, a case-wide count).
    scope: str = "host"
    author: str = ""  # a Sigma rule's author
    # A Sigma rule (engine.findings.sigma): its logsource and condition as SQL over the case; its
    # hits come from the one pass over each logsource that all its rules share.
    sigma_logsource: str | None = None
    sigma_condition: str | None = None
    # The event IDs the rule can match at all (empty: any event of its logsource).
    sigma_event_ids: tuple[int, ...] = ()

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def with_allow(self, extra: dict[str, list[str]]) -> Rule:
        merged: dict[str, list[str]] = {k: list(v) for k, v in self.allow}
        for key, values in extra.items():
            merged.setdefault(key, [])
            merged[key] += [v for v in values if v not in merged[key]]
        return Rule(**{**self.__dict__, "allow": tuple((k, tuple(v)) for k, v in sorted(merged.items()))})


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)  # every rule, enabled or not, user's last
    failed: list[str] = field(default_factory=list)  # files or rules that did not load, with why
    files: list[Path] = field(default_factory=list)
    allowlist_path: Path | None = None
    texts: list[str] = field(default_factory=list)
    sigma_dirs: list[Path] = field(default_factory=list)
    sigma_skipped: list[str] = field(default_factory=list)  # not Windows, or a logsource not mapped
    sigma_unsupported: list[str] = field(default_factory=list)  # correlation rules, by name
    sigma_waiting: list[str] = field(default_factory=list)  # rules whose placeholder is not filled
    sigma_loaded: int = 0

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def digest(self) -> str:
        """What the findings were computed with (rules and allowlists, as read)."""
        return hashlib.sha256("\0".join(self.texts).encode()).hexdigest()[:16]


def user_rules_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("ashiato")) / "rules"


def _line_of(text: str, key: str, after: int = 0) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if number > after and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return after


def _rule_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[rule]]"]


def _suggest(name: str, names: list[str] | tuple[str, ...]) -> str:
    from rapidfuzz import process

    best = process.extractOne(name, list(names), score_cutoff=60)
    return f' (did you mean "{best[0]}"?)' if best else ""


def parse_window(value: str) -> timedelta:
    m = _WINDOW.match(value.strip())
    if not m:
        raise ValueError(f"window {value!r} is not a duration like 30s, 10m, 2h or 1d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _rule(raw: dict[str, Any], path: Path, text: str, line: int) -> Rule:
    where = f"{path}:{line}"
    for key, value in raw.items():
        if key not in RULE_KEYS:
            raise RuleError(f"{path}:{_line_of(text, key, line)}: unknown key {key!r} in [[rule]]"
                            f"{_suggest(key, tuple(RULE_KEYS))}")
        typ = RULE_KEYS[key][0]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise RuleError(f"{path}:{_line_of(text, key, line)}: {key} must be {RULE_KEYS[key][2]!r} "
                            f"({getattr(typ, '__name__', typ)}), not {value!r}")
    missing = [k for k, (_, required, _) in RULE_KEYS.items() if required and k not in raw]
    if missing:
        raise RuleError(f"{where}: a rule needs {', '.join(missing)}")
    rid = raw["id"]
    if not _ID.match(rid):
        raise RuleError(f"{path}:{_line_of(text, 'id', line)}: id {rid!r}: lower-case letters, digits, . _ -")
    if raw["severity"] not in SEVERITIES:
        raise RuleError(f"{path}:{_line_of(text, 'severity', line)}: rule {rid}: severity {raw['severity']!r} "
                        f"is not one of {', '.join(SEVERITIES)}{_suggest(raw['severity'], SEVERITIES)}")
    if ("filter" in raw) == ("sql" in raw):
        raise RuleError(f"{where}: rule {rid} needs one of filter or sql")
    if "filter" in raw:
        from ..filters import FilterError, compile_filter

        try:
            compile_filter(raw["filter"])
        except FilterError as exc:
            raise RuleError(f"{path}:{_line_of(text, 'filter', line)}: rule {rid}: {exc}") from None
        from ..schema import EVENT_COLUMN_NAMES

        for name in raw.get("fields", []):
            if name not in EVENT_COLUMN_NAMES:
                raise RuleError(f"{path}:{_line_of(text, 'fields', line)}: rule {rid}: fields: {name!r} is not an "
                                f"event column{_suggest(str(name), EVENT_COLUMN_NAMES)}")
    elif not re.match(r"^\s*(WITH|SELECT)\b", raw["sql"], re.I):
        raise RuleError(f"{path}:{_line_of(text, 'sql', line)}: rule {rid}: sql must be one SELECT (or WITH … SELECT)")
    window = None
    if "window" in raw:
        try:
            window = parse_window(raw["window"])
        except ValueError as exc:
            raise RuleError(f"{path}:{_line_of(text, 'window', line)}: rule {rid}: {exc}") from None
    for key in (*raw.get("group_by", []), *raw.get("min_distinct", {}), *raw.get("allow", {})):
        if not isinstance(key, str) or not _FIELD.match(key):
            raise RuleError(f"{where}: rule {rid}: {key!r} is not a column name")
    for key, value in raw.get("min_distinct", {}).items():
        if not isinstance(value, int) or value < 1:
            raise RuleError(f"{path}:{_line_of(text, 'min_distinct', line)}: rule {rid}: min_distinct.{key} "
                            f"must be a whole number of at least 1")
    allow = []
    for key, values in raw.get("allow", {}).items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RuleError(f"{where}: rule {rid}: allow.{key} must be a list of strings (globs)")
        allow.append((key, tuple(values)))
    group_by = tuple(raw.get("group_by", ["host"]))
    scope = raw.get("scope", "host" if "host" in group_by else "case")
    if scope not in SCOPES:
        raise RuleError(f"{path}:{_line_of(text, 'scope', line)}: rule {rid}: scope {scope!r} is not one of "
                        f"{', '.join(SCOPES)}")
    needs = []
    for item in raw.get("needs", []):
        channel, _, eid = str(item).rpartition(":")
        if not channel or not eid.isdigit():
            raise RuleError(f"{path}:{_line_of(text, 'needs', line)}: rule {rid}: needs {item!r} is not CHANNEL:EID")
        needs.append((channel, int(eid)))
    return Rule(
        id=rid, title=raw["title"], severity=raw["severity"], reason=raw["reason"], source=str(path),
        attack=tuple(raw.get("attack", [])), description=raw.get("description", ""),
        references=tuple(raw.get("references", [])), needs=tuple(needs), filter=raw.get("filter"),
        fields=tuple(raw.get("fields", [])), sql=raw.get("sql"), group_by=group_by, scope=scope,
        window=window, min_count=int(raw.get("min_count", 1)),
        min_distinct=tuple(sorted(raw.get("min_distinct", {}).items())), allow=tuple(allow),
        enabled=bool(raw.get("enabled", True)))


def load_file(path: Path) -> tuple[list[Rule], str]:
    """The rules of one file, and its text; RuleError naming the file, line and key otherwise."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: {exc}") from None
    unknown = set(data) - {"rule"}
    if unknown:
        key = sorted(unknown)[0]
        raise RuleError(f"{path}:{_line_of(text, key) or 1}: unknown top-level key {key!r} (rules are [[rule]] tables)"
                        f"{_suggest(key, ['rule'])}")
    lines = _rule_lines(text)
    rules = [_rule(raw, path, text, lines[i] if i < len(lines) else 0) for i, raw in enumerate(data.get("rule", []))]
    return rules, text


def _load_allowlist(path: Path, known: set[str]) -> tuple[dict[str, dict[str, list[str]]], str]:
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: {exc}") from None
    out: dict[str, dict[str, list[str]]] = {}
    for rule_id, table in data.items():
        if rule_id not in known or not isinstance(table, dict):
            raise RuleError(f"{path}:{_line_of(text, rule_id) or 1}: [{rule_id}] is not a rule"
                            f"{_suggest(rule_id, sorted(known))}")
        for key, values in table.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise RuleError(f"{path}: [{rule_id}] {key} must be a list of strings (globs)")
            out.setdefault(rule_id, {})[key] = values
    return out, text


def user_sigma_dirs() -> list[Path]:
    """The Sigma directories named once in the user's config (`sigma.toml`: dirs = ["…"])."""
    from platformdirs import user_config_dir

    path = Path(user_config_dir("ashiato")) / "sigma.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        return []
    return [Path(str(d)).expanduser() for d in data.get("dirs", []) if isinstance(d, str)]


def load(*dirs: Path | None, user: bool = True, sigma: list[Path] | None = None,
         placeholders: Path | None = None) -> RuleSet:
    """The project's rules, then each directory's (the user's rules directory unless `user` is
    False), then the allowlist of the last directory. A file that fails is reported and skipped:
    the other rules still run."""
    chosen = [PROJECT_RULES] + ([user_rules_dir()] if user else []) + [d for d in dirs if d is not None]
    out = RuleSet()
    if not PROJECT_RULES.is_dir():
        out.failed.append(f"{PROJECT_RULES}: the project's rules directory is missing (install from a clone "
                          "with pip install -e .)")
    by_id: dict[str, Rule] = {}
    for directory in chosen:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            if path.name == "allowlist.toml":
                continue
            try:
                rules, text = load_file(path)
            except (RuleError, OSError, UnicodeDecodeError) as exc:
                out.failed.append(str(exc))
                continue
            out.files.append(path)
            out.texts.append(f"{path}\n{text}")
            seen: set[str] = set()
            for rule in rules:
                if rule.id in seen:
                    out.failed.append(f"{path}: rule {rule.id} is defined twice in this file")
                    continue
                seen.add(rule.id)
                by_id[rule.id] = rule  # a later directory's rule of the same id replaces it
    sigma_dirs = list(sigma or []) + (user_sigma_dirs() if user else [])
    if sigma_dirs:
        from .sigma import load as load_sigma
        from .sigma import load_placeholders

        try:
            values = load_placeholders(placeholders) if (placeholders or user) else {}
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            out.failed.append(f"{placeholders or 'sigma_placeholders.toml'}: {exc}")
            values = {}
        found = load_sigma(*[d for d in sigma_dirs if d.is_dir()], placeholders=values)
        out.sigma_waiting = found.waiting
        out.failed += [f"{d}: no such Sigma directory" for d in sigma_dirs if not d.is_dir()]
        out.failed += found.failed
        out.sigma_dirs, out.sigma_skipped, out.sigma_unsupported = sigma_dirs, found.skipped, found.unsupported
        out.sigma_loaded = len(found.rules)
        out.texts += found.texts
        for rule in found.rules:
            by_id.setdefault(rule.id, rule)  # a project or user rule of the same id wins
    # The user's allowlist applies to Sigma rules too (by their id): they are loaded first.
    writable = [d for d in chosen if d != PROJECT_RULES]
    out.allowlist_path = (writable[-1] if writable else user_rules_dir()) / "allowlist.toml"
    for directory in writable:
        path = directory / "allowlist.toml"
        if not path.is_file():
            continue
        try:
            extra, text = _load_allowlist(path, set(by_id))
        except (RuleError, OSError, UnicodeDecodeError) as exc:
            out.failed.append(str(exc))
            continue
        out.texts.append(f"{path}\n{text}")
        for rule_id, fields in extra.items():
            by_id[rule_id] = by_id[rule_id].with_allow(fields)
    out.rules = sorted(by_id.values(), key=lambda r: (-r.rank, r.id))
    return out


def add_to_allowlist(path: Path, rule_id: str, column: str, value: str) -> None:
    """Append `value` (a glob: * matches anything) to the rule's allowlist in the TOML file at
    `path`, keeping what is there."""
    data: dict[str, dict[str, list[str]]] = {}
    if path.is_file():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    values = data.setdefault(rule_id, {}).setdefault(column, [])
    if value not in values:
        values.append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(_dumps(data), encoding="utf-8")
    tmp.replace(path)


def _dumps(data: dict[str, dict[str, list[str]]]) -> str:
    # JSON strings are TOML basic strings (same escapes); keys are quoted the same way.
    import json

    lines = ["# Values the findings view (x) or you added: hits with these values are left out.", ""]
    for rule_id, table in data.items():
        lines.append(f"[{json.dumps(rule_id)}]")
        for key, values in table.items():
            lines.append(f"{json.dumps(key)} = [{', '.join(json.dumps(v) for v in values)}]")
        lines.append("")
    return "\n".join(lines)
