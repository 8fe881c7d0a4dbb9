"""The filter language analysts type, compiled to parameterised SQL over `events e`.

    event_id:4624,4625 user:alice -logon_type:5 after:2020-09-20T10:00 "net user" mimikatz

Terms are ANDed. `field:value` (any of `v1,v2`), `-field:value` excludes, `field:>=N` (also >, <,
<=) compares numbers or times, `after:` / `before:` bound the time (ISO 8601, UTC unless an offset
is given), `*` is a wildcard, and bare words or "quoted text" match a substring anywhere in the
event. Field names are the typed columns, short aliases, and any field of the original events.
No user text is ever spliced into SQL: every value is a bound parameter, and field names are
resolved against known names before they reach the query.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Any

from .channels import channel_spellings
from .ingest.normalise import canonical_ip, data_field_sql
from .schema import COLUMN_TYPES, EVENT_COLUMN_NAMES

# alias → the columns it searches (any of them may match)
ALIASES: dict[str, tuple[str, ...]] = {
    "eid": ("event_id",),
    "id": ("event_id",),
    "user": ("target_user", "subject_user", "member_name"),
    "domain": ("target_domain", "subject_domain"),
    "sid": ("target_sid", "subject_sid", "user_sid", "member_sid"),
    "logon_id": ("target_logon_id", "subject_logon_id"),
    "ip": ("src_ip", "dst_ip"),
    "image": ("process_image", "parent_image", "target_image"),
    "process": ("process_image",),
    "parent": ("parent_image",),
    "cmd": ("command_line",),
    "computer": ("host",),
    "type": ("logon_type",),
    "pid": ("process_pid",),
    "guid": ("process_guid", "parent_guid", "target_guid"),
    "access": ("granted_access",),
    "object": ("object_name",),
    # what was acted on: the process opened (Sysmon 8/10) or the object of a handle (4656/4663)
    "target": ("target_image", "object_name"),
    "service": ("service_name",),
    "task": ("task_name",),
    "workstation": ("workstation",),
}
TIME_KEYS = ("after", "before")
# Image paths: a bare file name (no backslash) matches the path's last part, as shown in the timeline.
PATH_COLUMNS = frozenset({"process_image", "parent_image", "target_image", "object_name", "logon_process_image",
                          "image"})
# User columns and the domain column beside each: DOMAIN\user matches both, as shown in the timeline.
USER_DOMAIN = {"target_user": "target_domain", "subject_user": "subject_domain", "member_name": None,
               "user": "domain"}
# When each account column is the one the user column shows: a group change's member, else the
# target account, else the acting one (engine.summary.user_of).
_NO_MEMBER = "e.member_name IS NULL AND e.member_sid IS NULL"
USER_SHOWN = {"member_name": "e.member_name IS NOT NULL",
              "target_user": f"{_NO_MEMBER} AND coalesce(e.target_user, '') <> ''",
              "subject_user": f"{_NO_MEMBER} AND coalesce(e.target_user, '') = ''"}
GUID_COLUMNS = frozenset({"process_guid", "parent_guid", "target_guid", "logon_guid", "script_block_id"})
# Event IDs are 16-bit: a larger number is a mistake, not a filter that silently matches nothing.
MAX_EVENT_ID = 65535
# Columns a bare word is looked for in, besides the original event.
TEXT_COLUMNS = [c for c in EVENT_COLUMN_NAMES if COLUMN_TYPES[c] == "VARCHAR"]
_NUMERIC = {"INTEGER", "BIGINT", "UBIGINT", "UINTEGER", "SMALLINT"}
# How every term that reads the original documents names them, always followed by a parenthesised
# condition: views.resolve_steps() narrows it to one range of documents at a time.
DOCUMENTS = "FROM event_data d WHERE"


def column_types(ddl: str) -> dict[str, str]:
    """Column → SQL type of a derived table, read from its CREATE TABLE statement (one column a line)."""
    types: dict[str, str] = {}
    for line in ddl.splitlines()[1:-1]:
        m = re.match(r'\s*"?(\w+)"?\s+([A-Z]+(?:\[\])?)', line)
        if m:
            types[m.group(1)] = m.group(2)
    return types


@dataclass(frozen=True)
class Table:
    """What a filter is compiled over: the columns of a table read as `e`, their aliases, and how
    `after:` / `before:` bound it. Only `events` has original documents to search."""

    name: str
    types: dict[str, str]
    aliases: dict[str, tuple[str, ...]]
    text_columns: list[str]
    after_sql: str
    before_sql: str
    documents: bool = False
    time_column: str = "ts"


EVENTS = Table("events", COLUMN_TYPES, ALIASES, TEXT_COLUMNS, "e.ts >= ?", "e.ts < ?", documents=True)
# `session:HOST/BOOT/0xID`: the events of one logon session (engine.sessions).
SESSION_KEY = "session"
# `process:KEY` / `tree:KEY`: the events of one process, or of it and everything it started
# (engine.lineage; KEY a ProcessGuid or HOST/BOOT/0xPID/NODE). `process:NAME` stays the image.
PROCESS_KEY = "process"
TREE_KEY = "tree"
# `finding:N`: the events of one finding (engine.findings).
FINDING_KEY = "finding"


def _is_process_key(value: str) -> bool:
    from .lineage import parse_key

    try:
        parse_key(value)
    except ValueError:
        return False
    return True


class FilterError(ValueError):
    """A filter that cannot be compiled, with where it went wrong."""

    def __init__(self, message: str, position: int, token: str, suggestion: str | None = None) -> None:
        self.message = message
        self.position = position
        self.token = token
        self.suggestion = suggestion
        hint = f' — did you mean "{suggestion}"?' if suggestion else ""
        super().__init__(f"{message}{hint} (at column {position + 1}: {token!r})")

    def caret(self, text: str) -> str:
        """The filter with a caret under the bad token, for terminals."""
        return f"{text}\n{' ' * self.position}^{'~' * max(0, len(self.token) - 1)}"


@dataclass
class Term:
    position: int
    text: str
    negate: bool = False
    field: str | None = None
    op: str = "="
    values: list[str] = dc_field(default_factory=list)


@dataclass
class Compiled:
    sql: str  # a boolean SQL expression over `events e`; "TRUE" for an empty filter
    params: list[Any]
    terms: list[Term]

    @property
    def empty(self) -> bool:
        return not self.terms

    @property
    def reads_documents(self) -> bool:
        """True when a term looks into the original documents: the slow, full-text kind of filter."""
        return DOCUMENTS in self.sql


def tokenize(text: str) -> list[Term]:
    terms: list[Term] = []
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        start = pos
        negate = False
        if text[pos] == "-" and pos + 1 < n and not text[pos + 1].isspace():
            negate = True
            pos += 1
        m = re.match(r"([A-Za-z_@][\w.@]*):", text[pos:])
        fname = None
        if m:
            fname = m.group(1)
            pos += m.end()
        value, pos = _read_value(text, pos, start)
        if fname is None and not value:
            raise FilterError("empty term", start, text[start:pos] or "-")
        op = "="
        if fname is not None:
            for candidate in (">=", "<=", ">", "<"):
                if value.startswith(candidate) and not value.startswith('"'):
                    op, value = candidate, value[len(candidate):]
                    break
            if value == "":
                raise FilterError(f'no value after "{fname}:"', start, text[start:pos])
        values = [_unquote(v) for v in _split_values(value)] if fname is not None else [_unquote(value)]
        if not values:
            raise FilterError(f'no value after "{fname}:"', start, text[start:pos])
        terms.append(Term(start, text[start:pos], negate, fname, op, values))
    return terms


def _read_value(text: str, pos: int, start: int) -> tuple[str, int]:
    n = len(text)
    out = []
    while pos < n and not text[pos].isspace():
        if text[pos] == '"':
            end = pos + 1
            while end < n and text[end] != '"':
                end += 2 if text.startswith('\\"', end) else 1
            if end >= n:
                raise FilterError("unclosed quote", pos, text[pos:])
            out.append(text[pos : end + 1])
            pos = end + 1
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out), pos


def _split_values(value: str) -> list[str]:
    parts: list[str] = []
    buf = ""
    in_quote = False
    for ch in value:
        if ch == '"':
            in_quote = not in_quote
        if ch == "," and not in_quote:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return [p for p in parts if p != ""]


def _unquote(value: str) -> str:
    # Backslashes are literal (Windows paths are full of them); only \" stands for a quote.
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return value[1:-1].replace('\\"', '"')
    return value


def parse_time(value: str) -> datetime:
    """ISO 8601 → naive UTC datetime (UTC unless the text carries an offset)."""
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        from datetime import UTC

        try:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError(f"{value} is outside the calendar once converted to UTC") from None
    return dt


def _parse_number(value: str) -> int | None:
    """An integer in decimal or 0x hex, within what a column can hold (else None)."""
    v = value.strip().lower()
    try:
        n = int(v, 16) if v.startswith("0x") else int(v)
    except ValueError:
        return None
    return n if -(2**63) <= n < 2**64 else None


def glob_like(value: str) -> str:
    """A glob (`*` any run of characters) as a LIKE pattern with ESCAPE '\\': the filter language's
    wildcards, and the lineage marks' and the findings allowlists' globs."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


class Compiler:
    """Compiles filters for one case: it knows the case's original field names."""

    def __init__(self, field_names: list[str] | None = None, table: Table = EVENTS) -> None:
        self.table = table
        self.field_names = (field_names or []) if table.documents else []
        self._by_lower: dict[str, list[str]] = {}
        for name in self.field_names:
            self._by_lower.setdefault(name.lower(), []).append(name)

    def known_names(self) -> list[str]:
        extra = {SESSION_KEY, PROCESS_KEY, TREE_KEY, FINDING_KEY} if self.table.documents else set()
        return sorted(set(self.table.types) | set(self.table.aliases) | set(TIME_KEYS) | set(self.field_names)
                      | extra)

    def compile(self, text: str) -> Compiled:
        terms = tokenize(text)
        parts: list[str] = []
        params: list[Any] = []
        _check_split_times(terms)
        _check_boolean_words(terms)
        for term in terms:
            sql, p = self._term(term)
            parts.append(f"NOT coalesce({sql}, FALSE)" if term.negate else f"({sql})")
            params += p
        return Compiled(" AND ".join(parts) if parts else "TRUE", params, terms)

    # -- one term ----------------------------------------------------------------------------------
    def _term(self, t: Term) -> tuple[str, list[Any]]:
        if t.field is None:
            return self._anywhere(t.values[0])
        name = t.field.lower()
        if name in TIME_KEYS:
            return self._time_bound(t, name)
        if name == "ts" or name == "time":
            return self._compare(t, [self.table.time_column])
        if name == SESSION_KEY and self.table.documents:
            return self._session(t)
        if name == TREE_KEY and self.table.documents:
            return self._process(t, name)
        if name == FINDING_KEY and self.table.documents:
            return self._finding(t)
        if name == PROCESS_KEY and self.table.documents and all(_is_process_key(v) for v in t.values):
            # `process:` is also the image (process:whoami.exe); a GUID or a node key names one process.
            return self._process(t, name)
        if name in self.table.aliases:
            return self._compare(t, list(self.table.aliases[name]))
        if name in self.table.types:
            return self._compare(t, [name])
        if t.field in self.field_names:
            return self._original(t, [t.field])
        if name in self._by_lower:
            # ProcessId and ProcessID can both exist (NXLog): a case-folded name matches either.
            return self._original(t, self._by_lower[name])
        raise FilterError(f'unknown field "{t.field}"', t.position, t.text, self._suggest(t.field))

    def _suggest(self, name: str) -> str | None:
        from rapidfuzz import process

        best = process.extractOne(name, self.known_names(), score_cutoff=60)
        return str(best[0]) if best else None

    def _time_bound(self, t: Term, name: str) -> tuple[str, list[Any]]:
        if len(t.values) != 1:
            raise FilterError(f"{name}: takes one time", t.position, t.text)
        try:
            when = parse_time(t.values[0])
        except ValueError:
            raise FilterError(f"{name}: expects an ISO 8601 time like 2020-09-20T10:00",
                              t.position, t.text) from None
        sql = self.table.after_sql if name == "after" else self.table.before_sql
        return sql, [when] * sql.count("?")

    def _session(self, t: Term) -> tuple[str, list[Any]]:
        from .sessions import SessionKey, session_params, session_term_sql

        ors: list[str] = []
        params: list[Any] = []
        for value in t.values:
            try:
                key = SessionKey.parse(value)
            except ValueError as exc:
                raise FilterError(f"session: {exc}", t.position, t.text) from None
            ors.append(session_term_sql())
            params += session_params(key)
        return " OR ".join(ors), params

    def _finding(self, t: Term) -> tuple[str, list[Any]]:
        from .findings import term_sql

        ids = []
        for value in t.values:
            if not value.isdigit():
                raise FilterError(f"finding: {value!r} is not a finding number (ashiato findings lists them)",
                                  t.position, t.text)
            ids.append(int(value))
        return " OR ".join(term_sql() for _ in ids), ids

    def _process(self, t: Term, name: str) -> tuple[str, list[Any]]:
        from .lineage import term_sql

        ors: list[str] = []
        params: list[Any] = []
        for value in t.values:
            try:
                sql, p = term_sql(value, subtree=name == TREE_KEY)
            except ValueError as exc:
                raise FilterError(f"{name}: {exc}", t.position, t.text) from None
            ors.append(sql)
            params += p
        return " OR ".join(ors), params

    def _compare(self, t: Term, columns: list[str]) -> tuple[str, list[Any]]:
        ors: list[str] = []
        params: list[Any] = []
        # `user:` is the account the user column shows (engine.summary.user_of), not any account
        # the event names: `eid:4625 user:Administrator` is not a Guest failure Administrator caused.
        shown = USER_SHOWN if self.table.documents and (t.field or "").lower() == "user" else {}
        for col in columns:
            typ = self.table.types.get(col, "TIMESTAMP" if col == "ts" else "VARCHAR")
            for value in t.values:
                sql, p = self._one(t, col, typ, value)
                ors.append(f"({shown[col]} AND ({sql}))" if col in shown else sql)
                params += p
        return " OR ".join(ors), params

    def _one(self, t: Term, col: str, typ: str, value: str) -> tuple[str, list[Any]]:
        ref = f'e."{col}"' if col in ("user", "end") else f"e.{col}"
        if typ == "BOOLEAN":
            truth = {"yes": True, "true": True, "y": True, "1": True, "no": False, "false": False, "n": False,
                     "0": False}.get(value.strip().lower())
            if truth is None or t.op != "=":
                raise FilterError(f'{t.field}: "{value}" is not yes or no', t.position, t.text)
            return f"{ref} = ?", [truth]
        if typ == "DOUBLE":
            try:
                return f"{ref} {t.op} ?", [float(value)]
            except ValueError:
                raise FilterError(f'{t.field}: "{value}" is not a number', t.position, t.text) from None
        if typ == "VARCHAR[]":
            if "*" in value:
                return f"len(list_filter({ref}, lambda x: x ILIKE ? ESCAPE '\\')) > 0", [glob_like(value.strip())]
            if col == "marks":
                # Marks are reasons written out ("opened lsass.exe (0x1410)"): any word of them.
                return f"len(list_filter({ref}, lambda x: contains(lower(x), lower(?)))) > 0", [value.strip()]
            # A list of names (flags, privileges): one of them starts with the value, as typed.
            return f"len(list_filter({ref}, lambda x: starts_with(lower(x), lower(?)))) > 0", [value.strip()]
        if typ in _NUMERIC:
            if col == "granted_access" and not value.strip().lower().startswith("0x"):
                # Masks are written in hex everywhere: 1fffff can only be hex, but 1410 could be
                # either, so it is refused rather than guessed.
                if re.fullmatch(r"[0-9]+", value.strip()):
                    raise FilterError(f'{t.field}: "{value}" could be decimal or hex; access masks are written '
                                      f'in hex: 0x{value.strip()}', t.position, t.text)
                value = "0x" + value.strip()
            number = _parse_number(value)
            if number is None and col == "event_id":
                raise FilterError(f'{t.field}: "{value}" is not an event ID (a number from 0 to {MAX_EVENT_ID})',
                                  t.position, t.text)
            if number is None:
                raise FilterError(f'{t.field}: "{value}" is not a number (decimal or 0x hex, 64-bit)',
                                      t.position, t.text)
            if col == "event_id" and not 0 <= number <= MAX_EVENT_ID:
                raise FilterError(f'{t.field}: {value} is not an event ID (0 to {MAX_EVENT_ID})', t.position, t.text)
            return f"{ref} {t.op} ?", [number]
        if typ == "TIMESTAMP":
            try:
                return f"{ref} {t.op} ?", [parse_time(value)]
            except ValueError:
                raise FilterError(f'{t.field}: "{value}" is not an ISO 8601 time', t.position, t.text) from None
        if t.op != "=":
            return f"{ref} {t.op} ?", [value]
        if "*" in value:
            return f"{ref} ILIKE ? ESCAPE '\\'", [glob_like(value)]
        if col == "channel":
            # As the timeline shows it too: Sysmon, TS-RCM, Bits-Client.
            names = channel_spellings(value)
            return f"lower({ref}) IN ({', '.join('?' for _ in names)})", names
        if col == "host" and not _looks_like_ip(value):
            # The timeline shows hosts without their domain, and collectors log one host both ways:
            # WS07 finds WS07.corp.local, and WS07.corp.local finds WS07. Addresses stay whole.
            if "." in value:  # a full name also finds the bare name, not the same name in another domain
                return f"lower({ref}) IN (lower(?), lower(?))", [value, value.strip().split(".", 1)[0]]
            return f"(lower({ref}) = lower(?) OR starts_with(lower({ref}), lower(?) || '.'))", [value, value]
        if col in ("src_ip", "dst_ip"):
            # Stored in one spelling: ::1 finds 0:0:0:0:0:0:0:1, 10.0.0.5 finds ::ffff:10.0.0.5, and an
            # address without a zone finds it with one (fe80::1 finds fe80::1%10). The value as typed
            # is compared too: a case ingested before addresses were canonical holds it as written.
            canonical = canonical_ip(value)
            if "%" in value:
                return f"lower({ref}) IN (lower(?), ?)", [value, canonical]
            return f"(lower({ref}) IN (lower(?), ?) OR split_part(lower({ref}), '%', 1) = ?)", [
                value, canonical, canonical]
        if col in GUID_COLUMNS:
            # Stored without braces, in lower case; the documents spell them either way.
            return f"{ref} = ?", [value.strip().strip("{}").lower()]
        if col == "privileges":
            # A list of names: one of them matches.
            return f"list_contains(string_split(lower({ref}), ' '), lower(?))", [value.strip()]
        if col in PATH_COLUMNS and "\\" not in value and "/" not in value:
            return f"(lower({ref}) = lower(?) OR ends_with(lower({ref}), '\\' || lower(?)))", [value, value]
        if col in USER_DOMAIN and "\\" in value:
            domain, _, user = value.rpartition("\\")
            domain_col = USER_DOMAIN[col]
            if domain_col is None:
                return "FALSE", []  # a group member's name carries no domain to compare
            return f"(lower({ref}) = lower(?) AND lower(e.{domain_col}) = lower(?))", [user, domain]
        return f"lower({ref}) = lower(?)", [value]

    def _original(self, t: Term, names: list[str]) -> tuple[str, list[Any]]:
        ors: list[str] = []
        params: list[Any] = []
        for name in names:
            path = '$."' + name.replace('"', '\\"') + '"'
            expr = data_field_sql("?")
            for value in t.values:
                number = _parse_number(value) if t.op != "=" else None
                if t.op != "=":
                    if number is None:
                        raise FilterError(f'{t.field}: "{value}" is not a number (decimal or 0x hex, 64-bit)',
                                      t.position, t.text)
                    ors.append(f"try_cast({expr} AS HUGEINT) {t.op} ?")
                    params += [path, path, number]
                elif "*" in value:
                    ors.append(f"{expr} ILIKE ? ESCAPE '\\'")
                    params += [path, path, glob_like(value)]
                else:
                    ors.append(f"lower({expr}) = lower(?)")
                    params += [path, path, value]
                    number = _parse_number(value)
                    if number is not None:
                        # The same integer written the other way (ProcessId 3148 is 0xc4c in 4688);
                        # only whole numbers, which a cast would otherwise round ("12.5" → 13).
                        ors.append(f"CASE WHEN regexp_full_match(trim({expr}), '(?i)0x[0-9a-f]+|[0-9]+') "
                                   f"THEN try_cast(trim({expr}) AS HUGEINT) = ? END")
                        params += [path, path, path, path, number]
        return f"e.eid IN (SELECT d.eid {DOCUMENTS} ({' OR '.join(ors)}))", params

    def _anywhere(self, value: str) -> tuple[str, list[Any]]:
        """A substring of any field, case-insensitive; `*` is a wildcard.

        RE2 with (?i) measured about five times faster than ILIKE over the original documents.
        Those are JSON text, where `C:\\Windows` is written `C:\\\\Windows`: the JSON-escaped
        spelling of the value is searched for too.
        """
        pattern = _regex(value)
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        doc_pattern = pattern if escaped == value else f"{pattern[:4]}(?:{pattern[4:]}|{_regex(escaped)[4:]})"
        columns = self.table.text_columns
        cols = " OR ".join(f'regexp_matches(e."{c}", ?)' for c in columns)
        params: list[Any] = [pattern] * len(columns)
        number = _parse_number(value)
        extra = ""
        if not self.table.documents:
            return cols, params
        if number is not None:
            extra = " OR e.event_id = ?"
            params.append(number)
        sql = (f"{cols}{extra} OR e.eid IN (SELECT d.eid {DOCUMENTS} "
               f"(regexp_matches(d.raw, ?) OR regexp_matches(d.data, ?)))")
        return sql, [*params, doc_pattern, doc_pattern]


def _check_boolean_words(terms: list[Term]) -> None:
    """`eid:4624 OR eid:4625` and `(…)` look like boolean syntax this language does not have: as
    search words they would silently match nothing."""
    for t in terms:
        if t.field is not None or t.text.lstrip("-").startswith('"'):
            continue
        word = t.values[0]
        if word in ("OR", "AND", "NOT", "||", "&&"):
            raise FilterError(f'terms are always ANDed; for "any of" write field:v1,v2, to exclude -field:v '
                              f'(search for the word itself with "{word}" in quotes)', t.position, t.text)
        if word.startswith("(") or word.endswith(")"):
            raise FilterError('there are no parentheses: terms are ANDed, field:v1,v2 is "any of" '
                              '(quote the text to search for it)', t.position, t.text)


def _check_split_times(terms: list[Term]) -> None:
    """`after:2020-09-20 10:00` reads as a date, then a search for the word "10:00": say so."""
    for before, after in itertools.pairwise(terms):
        if (before.field or "").lower() in TIME_KEYS and after.field is None and not after.negate \
                and re.fullmatch(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", after.values[0]):
            raise FilterError(f'a space ends "{before.text}": write {before.field}:{before.values[0]}T{after.values[0]}',
                              after.position, after.text)


def _looks_like_ip(value: str) -> bool:
    text = value.strip()
    return ":" in text or text.replace(".", "").isdigit()


def _regex(value: str) -> str:
    return "(?i)" + ".*".join(re.escape(part) for part in value.split("*"))


def compile_filter(text: str, field_names: list[str] | None = None, table: Table = EVENTS) -> Compiled:
    return Compiler(field_names, table).compile(text)
