"""Sigma rules as findings: parsed by pySigma (the reference implementation), converted to SQL over
the case by a DuckDB backend built on pySigma's SQLite backend (its cascade of string, wildcard,
regex, CIDR, base64, field-reference and comparison conversions is reused; what differs in DuckDB
is said here), and run as the findings rules are (engine.findings.run).

- Logsources: product windows with a service (a channel) or a category (channels and event IDs);
  process_creation reads Sysmon 1 and Security 4688 alike, 4688's NewProcessName / ParentProcessName
  / CommandLine answering for Image / ParentImage / CommandLine through the typed columns.
- Fields: the event's original field (`event_data`), by its Sigma name; the typed column where one
  holds it exactly (process creation's image, command line and parent).
- Matching is case-insensitive (ILIKE, lower() on equality) unless the rule says `|cased`.
- Keywords (values bound to no field) search the whole event's data, which the SQLite backend
  Zircolite uses cannot do.
- Correlation rules are listed as unsupported by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from .rules import SEVERITIES, Rule

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SERVICES = {
    "security": "Security", "system": "System", "application": "Application", "sysmon": SYSMON,
    "powershell": "Microsoft-Windows-PowerShell/Operational", "powershell-classic": "Windows PowerShell",
    "taskscheduler": "Microsoft-Windows-TaskScheduler/Operational",
    "wmi": "Microsoft-Windows-WMI-Activity/Operational",
    "windefend": "Microsoft-Windows-Windows Defender/Operational",
    "bits-client": "Microsoft-Windows-Bits-Client/Operational", "dns-server": "DNS Server",
    "driver-framework": "Microsoft-Windows-DriverFrameworks-UserMode/Operational",
    "codeintegrity-operational": "Microsoft-Windows-CodeIntegrity/Operational",
    "firewall-as": "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
    "terminalservices-localsessionmanager": "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "printservice-admin": "Microsoft-Windows-PrintService/Admin",
    "printservice-operational": "Microsoft-Windows-PrintService/Operational",
    "smbclient-security": "Microsoft-Windows-SmbClient/Security",
    "ntlm": "Microsoft-Windows-NTLM/Operational", "dns-client": "Microsoft-Windows-DNS Client Events/Operational",
    "msexchange-management": "MSExchange Management", "openssh": "OpenSSH/Operational",
    "appxdeployment-server": "Microsoft-Windows-AppXDeploymentServer/Operational",
    "lsa-server": "Microsoft-Windows-LSA/Operational", "diagnosis-scripted": "Microsoft-Windows-Diagnosis-Scripted/Operational",
    "shell-core": "Microsoft-Windows-Shell-Core/Operational", "capi2": "Microsoft-Windows-CAPI2/Operational",
    "certificateservicesclient-lifecycle-system": "Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational",
    "iis-configuration": "Microsoft-IIS-Configuration/Operational",
    "security-mitigations": None,  # two channels: below
    "appmodel-runtime": "Microsoft-Windows-AppModel-Runtime/Admin",
    "appxpackaging-om": "Microsoft-Windows-AppxPackagingOM/Operational",
    "ldap": "Microsoft-Windows-LDAP-Client/Debug", "microsoft-servicebus-client": "Microsoft-ServiceBus-Client",
    "smbserver-connectivity": "Microsoft-Windows-SMBServer/Connectivity",
    "smbclient-connectivity": "Microsoft-Windows-SmbClient/Connectivity",
    "dns-server-analytic": "Microsoft-Windows-DNSServer/Analytical",
    "applocker": None,  # four channels: below
}
MULTI = {"security-mitigations": ("Microsoft-Windows-Security-Mitigations/KernelMode",
                                  "Microsoft-Windows-Security-Mitigations/UserMode")}
APPLOCKER = ("Microsoft-Windows-AppLocker/MSI and Script", "Microsoft-Windows-AppLocker/EXE and DLL",
             "Microsoft-Windows-AppLocker/Packaged app-Deployment", "Microsoft-Windows-AppLocker/Packaged app-Execution")
# category -> [(channel, event ids)]
CATEGORIES: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "process_creation": [(SYSMON, (1,)), ("Security", (4688,))],
    "file_change": [(SYSMON, (2,))], "network_connection": [(SYSMON, (3,))], "sysmon_status": [(SYSMON, (4, 16))],
    "process_termination": [(SYSMON, (5,))], "driver_load": [(SYSMON, (6,))], "image_load": [(SYSMON, (7,))],
    "create_remote_thread": [(SYSMON, (8,))], "raw_access_thread": [(SYSMON, (9,))],
    "process_access": [(SYSMON, (10,))], "file_event": [(SYSMON, (11,))],
    "registry_add": [(SYSMON, (12,))], "registry_delete": [(SYSMON, (12,))], "registry_set": [(SYSMON, (13,))],
    "registry_rename": [(SYSMON, (14,))], "registry_event": [(SYSMON, (12, 13, 14))],
    "create_stream_hash": [(SYSMON, (15,))], "pipe_created": [(SYSMON, (17, 18))],
    "wmi_event": [(SYSMON, (19, 20, 21))], "dns_query": [(SYSMON, (22,))], "file_delete": [(SYSMON, (23, 26))],
    "clipboard_capture": [(SYSMON, (24,))], "process_tampering": [(SYSMON, (25,))],
    "file_block_executable": [(SYSMON, (27,))], "file_block_shredding": [(SYSMON, (28,))],
    "file_executable_detected": [(SYSMON, (29,))], "sysmon_error": [(SYSMON, (255,))],
    # Not mapped: file_access and file_rename (an EDR's file telemetry; Windows logs have no event
    # with those fields), which are listed as skipped with their logsource.
    "ps_script": [("Microsoft-Windows-PowerShell/Operational", (4104,))],
    "ps_module": [("Microsoft-Windows-PowerShell/Operational", (4103,))],
    "ps_classic_start": [("Windows PowerShell", (400,))], "ps_classic_provider_start": [("Windows PowerShell", (600,))],
    "ps_classic_script": [("Windows PowerShell", (800,))],
}
# Where a typed column holds a Sigma field exactly, for a category (faster, and 4688's names).
TYPED = {"process_creation": {"image": "e.process_image", "commandline": "e.command_line",
                              "parentimage": "e.parent_image", "parentcommandline": "e.parent_command_line"}}
# The System part of an event is in typed columns, not in its event data.
SYSTEM_FIELDS = {"eventid": "e.event_id", "channel": "e.channel", "provider_name": "e.provider", "computer": "e.host",
                 "computername": "e.host", "level": "e.level", "eventrecordid": "e.record_id"}
_FIELD_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HOUR = timedelta(hours=1)
WHOLE_EVENT = "e.whole"
MIN_ALTERNATION = 4  # plain matches on one field that an OR turns into one regular expression
CHUNK = 100_000  # events of one range of the shared scan (a tenth of it for keyword passes)
# The events of one logsource (a range of them when it has many) with every field its rules read
# as a column of its own, extracted from the event data in one parse of each document (the
# flattened fields of a JSON shape, or an EVTX record's EventData), original and lowered: every
# condition then reads a column, where json_extract would parse the document again per field.
SOURCE_SQL = """CREATE OR REPLACE TEMP TABLE _sigma_source AS
    SELECT e.eid, e.ts, e.host, coalesce(e.subject_user, e.target_user) AS "user",
           nullif(e.subject_logon_id, 0) AS logon_id{typed}{columns}
    FROM (SELECT e.*, {values} AS v{whole} FROM events e JOIN (SELECT * FROM event_data WHERE {range}) d USING (eid)
          WHERE {where}) e"""
# The typed columns a condition may read, as _sigma_source holds them (l_: lowered once).
TYPED_COLUMNS = {"channel": "e.channel", "event_id": "e.event_id", "provider": "e.provider", "level": "e.level",
                 "record_id": "e.record_id", "process_image": "e.process_image", "command_line": "e.command_line",
                 "parent_image": "e.parent_image", "parent_command_line": "e.parent_command_line",
                 "l_event_id": "lower(CAST(e.event_id AS VARCHAR))", "l_channel": "lower(e.channel)",
                 "l_provider": "lower(e.provider)", "l_host": "lower(e.host)",
                 "l_level": "lower(CAST(e.level AS VARCHAR))", "l_record_id": "lower(CAST(e.record_id AS VARCHAR))",
                 "l_process_image": "lower(e.process_image)", "l_command_line": "lower(e.command_line)",
                 "l_parent_image": "lower(e.parent_image)", "l_parent_command_line": "lower(e.parent_command_line)"}


@dataclass
class SigmaSet:
    rules: list[Rule] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # not Windows, or a logsource this does not map
    failed: list[str] = field(default_factory=list)  # file: reason
    unsupported: list[str] = field(default_factory=list)  # correlation rules, by name
    waiting: list[str] = field(default_factory=list)  # rules whose placeholder is not filled yet
    texts: list[str] = field(default_factory=list)


def _backend(placeholders: dict[str, list[str]] | None = None) -> Any:
    from sigma.backends.sqlite import sqliteBackend  # type: ignore[attr-defined]
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import ValueListPlaceholderTransformation

    class DuckDBBackend(sqliteBackend):
        """pySigma's SQLite backend, with what DuckDB does differently: LIKE is case-sensitive there
        (ILIKE here), equality is made case-insensitive with lower(), regular expressions are
        regexp_matches (RE2), and a field is an expression over the case, not a column name."""

        name: ClassVar[str] = "ashiato DuckDB backend"
        startswith_expression: ClassVar[str] = "{field} ILIKE '{value}%' ESCAPE '\\'"
        endswith_expression: ClassVar[str] = "{field} ILIKE '%{value}' ESCAPE '\\'"
        contains_expression: ClassVar[str] = "{field} ILIKE '%{value}%' ESCAPE '\\'"
        wildcard_match_expression: ClassVar[str] = "{field} ILIKE '{value}' ESCAPE '\\'"
        wildcard_match_str_expression: ClassVar[str] = "{field} ILIKE '{value}' ESCAPE '\\'"
        eq_expression: ClassVar[str] = "lower({field}) = lower({value})"
        collate_nocase = False
        re_expression: ClassVar[str] = "regexp_matches({field}, '{regex}')"
        case_sensitive_match_expression: ClassVar[str] = "{field} GLOB {value}"
        # gt / gte / lt / lte: event data is text; a value that is no number compares as nothing.
        compare_op_expression: ClassVar[str] = "TRY_CAST({field} AS DOUBLE) {operator} {value}"
        field_null_expression: ClassVar[str] = "{field} IS NULL"
        category: str | None = None

        def escape_and_quote_field(self, field_name: str) -> str:
            typed = SYSTEM_FIELDS.get(field_name.lower()) or TYPED.get(self.category or "", {}).get(field_name.lower())
            if typed:
                return typed
            if not _FIELD_OK.match(field_name):
                raise ValueError(f"field name {field_name!r} is not one this backend reads")
            plain = f"e.m['{field_name}']"
            # Defender writes "Threat Name" where Sigma (and the other channels) say ThreatName.
            spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field_name)
            if spaced == field_name:
                return plain
            return f"coalesce({plain}, e.m['{spaced}'])"

        def finalize_query_default(self, rule: Any, query: str, index: int, state: Any) -> Any:
            return query

        def lowered_field(self, field_name: str) -> str:
            """The field's text in lower case: the typed column lowered, or the event field's
            lowered column of `_sigma_source` (`e.lm['Field']`, rewritten by _field_columns)."""
            typed = SYSTEM_FIELDS.get(field_name.lower()) or TYPED.get(self.category or "", {}).get(field_name.lower())
            if typed:
                # _sigma_source holds each typed column lowered once (l_<column>).
                return f"e.l_{typed.removeprefix('e.')}"
            self.escape_and_quote_field(field_name)  # the same check of the name
            plain = f"e.lm['{field_name}']"
            spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field_name)
            return plain if spaced == field_name else f"coalesce({plain}, e.lm['{spaced}'])"

        def convert_condition_field_eq_val_str(self, cond: Any, state: Any) -> Any:
            """Plain equality, startswith, endswith and contains (no wildcard inside): string
            functions on lowered text, which is Sigma's case-insensitive match and much cheaper
            than ILIKE on long command lines and scripts; anything else as the SQLite backend does."""
            from sigma.types import SpecialChars

            value = cond.value
            starts = value.startswith(SpecialChars.WILDCARD_MULTI)
            ends = len(value) > 1 and value.endswith(SpecialChars.WILDCARD_MULTI)
            inner = value[1 if starts else 0:(len(value) - 1) if ends else len(value)]
            if inner.contains_special():
                return super().convert_condition_field_eq_val_str(cond, state)
            text = "".join(part for part in inner.s if isinstance(part, str))  # no wildcard in it
            literal = "'" + text.lower().replace("'", "''") + "'"
            field = self.lowered_field(cond.field)
            if starts and ends:
                return f"contains({field}, {literal})"
            if ends:
                return f"starts_with({field}, {literal})"
            if starts:
                return f"ends_with({field}, {literal})"
            return f"{field} = {literal}"

        def _plain_match(self, cond: Any) -> tuple[str, str] | None:
            """(field, RE2 alternative) for a case-insensitive field = string (wildcards `*` and
            `?` as `.*` and `.`, anchored where the value has no wildcard at that end), else None."""
            from sigma.conditions import ConditionFieldEqualsValueExpression
            from sigma.types import SigmaCasedString, SigmaString, SpecialChars

            if not isinstance(cond, ConditionFieldEqualsValueExpression) or not cond.field:
                return None
            value = cond.value
            if not isinstance(value, SigmaString) or isinstance(value, SigmaCasedString) or not len(value):
                return None
            parts = list(value.s)
            head = "" if parts[0] == SpecialChars.WILDCARD_MULTI else "^"
            tail = "" if parts[-1] == SpecialChars.WILDCARD_MULTI else "$"
            while parts and parts[0] == SpecialChars.WILDCARD_MULTI:
                parts.pop(0)
            while parts and parts[-1] == SpecialChars.WILDCARD_MULTI:
                parts.pop()
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(re.sub(r"[\\.^$|?*+()\[\]{}]", lambda m: "\\" + m.group(0), part.lower()))
                elif part == SpecialChars.WILDCARD_MULTI:
                    out.append(".*")
                elif part == SpecialChars.WILDCARD_SINGLE:
                    out.append(".")
                else:  # a placeholder left in the value
                    return None
            return cond.field, head + "".join(out) + tail

        @staticmethod
        def _or_args(cond: Any) -> list[Any]:
            """The alternatives of an OR with nested ORs flattened (base64offset, windash and
            lists under `1 of` nest them), for grouping below."""
            from sigma.conditions import ConditionOR

            out: list[Any] = []
            for arg in cond.args:
                out.extend(DuckDBBackend._or_args(arg) if isinstance(arg, ConditionOR) else [arg])
            return out

        def convert_condition_or(self, cond: Any, state: Any) -> Any:
            """An OR of many plain matches on one field (a rule's list of command-line fragments,
            image names, hashes: dozens to hundreds) as one RE2 alternation over the lowered field:
            one linear scan of the text where each contains() scanned it again (the emoji rules'
            hundreds of alternatives: 12x faster). Short lists stay as they are."""
            groups: dict[str, list[str]] = {}
            args = [(arg, self._plain_match(arg)) for arg in self._or_args(cond)]
            for _, plain in args:
                if plain is not None:
                    groups.setdefault(plain[0], []).append(plain[1])
            many = {f for f, alts in groups.items() if len(alts) >= MIN_ALTERNATION}
            if not many:
                return super().convert_condition_or(cond, state)
            from sigma.conditions import ConditionOR

            rest = [arg for arg, plain in args if plain is None or plain[0] not in many]
            parts = []
            for f in sorted(many):
                pattern = "|".join(dict.fromkeys(groups[f])).replace("'", "''")
                # (?s): a wildcard matches across the lines of a command line or script too.
                parts.append(f"regexp_matches({self.lowered_field(f)}, '(?s){pattern}')")
            if rest:
                if len(rest) == 1:
                    arg = rest[0]
                    other = (self.convert_condition(arg, state) if self.compare_precedence(cond, arg)
                             else self.convert_condition_group(arg, state))
                else:
                    other = super().convert_condition_or(ConditionOR(rest), state)
                parts.append(str(other))
            return " OR ".join(parts)

        # A number against event text: compared as text (DuckDB would cast every value to a number
        # and fail on the first that is not one); a typed column compares as itself.
        def convert_condition_field_eq_val_num(self, cond: Any, state: Any) -> str:
            field = self.escape_and_quote_field(cond.field)
            return f"CAST({field} AS VARCHAR) = '{cond.value.number}'"

        def convert_condition_field_eq_val_bool(self, cond: Any, state: Any) -> str:
            field = self.escape_and_quote_field(cond.field)
            word, digit = ("true", "1") if cond.value.boolean else ("false", "0")
            return f"lower(CAST({field} AS VARCHAR)) IN ('{word}', '{digit}')"

        # Keywords: a value bound to no field is searched for in the whole event, as stored.
        def convert_condition_val_str(self, cond: Any, state: Any) -> str:
            value = self.convert_value_str(cond.value, state, True)
            return f"{WHOLE_EVENT} ILIKE '%{value}%' ESCAPE '\\'"

        def convert_condition_val_num(self, cond: Any, state: Any) -> str:
            return f"{WHOLE_EVENT} LIKE '%{int(cond.value.number)}%'"

    # Placeholders (%Admins_Workstations%, …) are filled from the user's values; one without a
    # value stops its rule's conversion, and the rule is listed as waiting for it.
    pipeline = ProcessingPipeline(items=[ProcessingItem(ValueListPlaceholderTransformation())],
                                  vars=dict(placeholders or {}))
    return DuckDBBackend(processing_pipeline=pipeline)  # type: ignore[no-untyped-call]


def _logsource(logsource: Any) -> str | None:
    """The SQL keeping the events of a rule's logsource, or None when it is not mapped."""
    if (logsource.product or "").lower() != "windows":
        return None
    service = (logsource.service or "").lower()
    category = (logsource.category or "").lower()
    parts: list[str] = []
    if category:
        pairs = CATEGORIES.get(category)
        if pairs is None:
            return None
        parts = [f"(e.channel = '{c}' AND e.event_id IN ({', '.join(map(str, ids))}))" for c, ids in pairs]
    channels: list[str] = []
    if service:
        if service == "applocker":
            channels = list(APPLOCKER)
        elif service in MULTI:
            channels = list(MULTI[service])
        elif SERVICES.get(service):
            channels = [str(SERVICES[service])]
        else:
            return None
    if channels:
        chan = f"e.channel IN ({', '.join(repr(c) for c in channels)})"
        return f"({chan} AND ({' OR '.join(parts)}))" if parts else chan
    return f"({' OR '.join(parts)})" if parts else None


def _attack(tags: list[Any]) -> tuple[str, ...]:
    out = []
    for tag in tags:
        if str(getattr(tag, "namespace", "")).lower() == "attack" and re.match(r"^t\d{4}", str(tag.name), re.I):
            out.append(str(tag.name).upper())
    return tuple(out)


def _converter() -> str:
    """What a cached conversion depends on: this module's code and pySigma's version."""
    import hashlib
    from importlib.metadata import version

    return hashlib.sha256(Path(__file__).read_bytes() + version("pysigma").encode()).hexdigest()[:16]


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ashiato")) / "sigma"


def user_placeholders_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("ashiato")) / "sigma_placeholders.toml"


def load_placeholders(path: Path | None = None) -> dict[str, list[str]]:
    """`name = ["value", …]` per placeholder (TOML), from `path` or the user's config dir."""
    import tomllib

    path = path or user_placeholders_path()
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in data.items()}


def load(*dirs: Path, cache: Path | None = None, placeholders: dict[str, list[str]] | None = None) -> SigmaSet:
    """Every Windows Sigma rule under `dirs` (recursively), converted; the others skipped, failed
    or unsupported, each with why. A file's conversion is cached by the hash of its text (and of
    this converter), so a second load converts nothing."""
    import hashlib
    import json

    out = SigmaSet()
    store = cache if cache is not None else cache_dir()
    converter = _converter()
    for directory in dirs:
        paths = sorted(Path(directory).rglob("*.yml")) + sorted(Path(directory).rglob("*.yaml"))
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                out.failed.append(f"{path}: {exc}")
                continue
            out.texts.append(f"{path}\n{text}")
            key = hashlib.sha256(f"{converter}\0{sorted((placeholders or {}).items())}\0{text}".encode()).hexdigest()
            cached = store / key[:2] / f"{key}.json"
            try:
                part = json.loads(cached.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                part = _convert(path, text, placeholders or {})
                try:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps(part), encoding="utf-8")
                except OSError:
                    pass  # a read-only home: convert again next time
            for name in ("skipped", "failed", "unsupported", "waiting"):
                getattr(out, name).extend(x.replace("{path}", str(path)) for x in part.get(name, []))
            for raw in part["rules"]:
                out.rules.append(Rule(
                    id=raw["id"], title=raw["title"], reason="{title}: {count} event(s) on {host}",
                    severity=raw["severity"], source=str(path), attack=tuple(raw["attack"]),
                    description=raw["description"], references=tuple(raw["references"]),
                    sql=HITS_SQL.format(rule=raw["id"].replace("'", "''")), group_by=("host",), window=_HOUR,
                    sigma_logsource=raw["logsource"], sigma_condition=raw["condition"],
                    sigma_event_ids=tuple(raw["event_ids"]), author=raw.get("author", "")))
    return out


_BACKEND: dict[str, Any] = {}


def _convert(path: Path, text: str, placeholders: dict[str, list[str]]) -> dict[str, list[Any]]:
    """One file's rules converted (as JSON-able dicts), and what was skipped, failed or is
    unsupported; `{path}` stands for the file's path (the cache is shared by copies of a file)."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError

    part: dict[str, list[Any]] = {"rules": [], "skipped": [], "failed": [], "unsupported": [], "waiting": []}
    which = repr(sorted(placeholders.items()))
    if which not in _BACKEND:
        _BACKEND[which] = _backend(placeholders)
    backend = _BACKEND[which]
    try:
        collection = SigmaCollection.from_yaml(text)
    except (SigmaError, ValueError) as exc:
        part["failed"].append(f"{{path}}: {exc}")
        return part
    out = _Collect(part)
    for rule in collection.rules:
        if isinstance(rule, SigmaCorrelationRule):
            out.unsupported.append(f"{{path}}: correlation rule {rule.title!r} ({rule.id})")
            continue
        where = _logsource(rule.logsource)
        if where is None:
            ls = rule.logsource
            out.skipped.append(f"{{path}}: logsource product={ls.product} category={ls.category} "
                               f"service={ls.service}")
            continue
        if rule.errors:
            out.failed.append(f"{{path}}: {rule.errors[0]}")
            continue
        backend.category = (rule.logsource.category or "").lower()
        try:
            queries = backend.convert_rule(rule)
        except Exception as exc:  # pySigma raises its own and NotImplementedError alike
            why = str(exc).splitlines()[0] if str(exc) else ""
            waiting = re.search(r"Placeholder replacement variable '([^']+)'", why)
            if waiting:
                out.waiting.append(f"{{path}}: waiting for placeholder %{waiting.group(1)}% "
                                   f"(give it values in {user_placeholders_path()})")
            else:
                out.failed.append(f"{{path}}: {type(exc).__name__}: {why}")
            continue
        level = str(rule.level.name).lower() if rule.level else "medium"
        eids = _event_ids(rule)
        out.rules.append({
            "id": str(rule.id or path.stem), "title": str(rule.title), "author": str(rule.author or ""),
            "severity": level if level in SEVERITIES else "medium", "attack": list(_attack(list(rule.tags or []))),
            "description": (str(rule.description or "").strip()
                            + (f" (Sigma; author: {rule.author})" if rule.author else " (Sigma)")),
            "references": [str(r) for r in (rule.references or [])],
            "logsource": where, "condition": " OR ".join(f"({q})" for q in queries),
            "event_ids": sorted(eids or ())})
    return part


def _event_ids(rule: Any) -> set[int] | None:
    """The event IDs a rule can match at all, when every one of its conditions requires an EventID
    (a conjunct `EventID: 4624`, or a list of them); else None. When all the rules of a logsource
    say theirs, its pass reads only those events (the four channel-wide Sysmon rules read Sysmon
    16, 27, 28 and 29, not all of Sysmon)."""
    from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR
    from sigma.types import SigmaNumber, SigmaString

    def ids(node: Any) -> set[int] | None:
        if isinstance(node, ConditionAND):
            found = [x for x in (ids(arg) for arg in node.args) if x is not None]
            return set.intersection(*found) if found else None
        if isinstance(node, ConditionOR):
            parts = [ids(arg) for arg in node.args]
            return None if not parts or any(p is None for p in parts) else set().union(*parts)  # type: ignore[arg-type]
        if isinstance(node, ConditionFieldEqualsValueExpression) and str(node.field).lower() == "eventid":
            value = node.value
            if isinstance(value, SigmaNumber) and isinstance(value.number, int):
                return {value.number}
            if isinstance(value, SigmaString) and not value.contains_special() and str(value).isdigit():
                return {int(str(value))}
        return None

    try:
        found = [ids(c.parsed) for c in rule.detection.parsed_condition]
    except Exception:  # a condition pySigma cannot parse again: read every event of the logsource
        return None
    if not found or any(f is None for f in found):
        return None
    return set().union(*found)  # type: ignore[arg-type]


class _Collect:
    def __init__(self, part: dict[str, list[Any]]) -> None:
        self.rules, self.skipped = part["rules"], part["skipped"]
        self.failed, self.unsupported, self.waiting = part["failed"], part["unsupported"], part["waiting"]



HITS_SQL = """SELECT eid, ts, host, "user", logon_id FROM sigma_hits WHERE rule = '{rule}'"""
BATCH = 150  # conditions evaluated in one pass (one CASE each)


HITS_DDL = """CREATE OR REPLACE TEMP TABLE sigma_hits (rule VARCHAR, eid BIGINT, ts TIMESTAMP, host VARCHAR,
    "user" VARCHAR, logon_id UBIGINT)"""


def prepare(cur: Any, rules: list[Rule], *, workers: int = 2, hosts: list[str] | None = None) -> list[str]:
    """`sigma_hits` (rule, eid, ts, host, user, logon_id) for the Sigma rules given: one pass over
    each logsource's events evaluates all of its rules' conditions at once. A batch that fails is
    run rule by rule, so a rule whose SQL fails fails alone. Logsources are shared out to `workers`
    threads, each on its own cursor (a logsource's events are few rows: one query of it keeps one
    core busy). With `hosts`, only the events of those hosts are read (store.only_hosts, on each
    worker's cursor: a temp view is its connection's own). Returns the failures."""
    cur.execute(HITS_DDL)
    # Two passes at once, each holding a range of events and its value combinations, need more
    # than the case's default limit on a large case; the limit is raised for the passes only.
    from ..case import DEFAULT_MEMORY_LIMIT

    before = cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    # Not past a limit the user set (`--memory-limit` on a small jump host): DuckDB spills instead.
    chosen = abs(_bytes(before) - _bytes(DEFAULT_MEMORY_LIMIT)) > 0.01 * _bytes(DEFAULT_MEMORY_LIMIT)
    if _bytes(before) < _bytes(SIGMA_MEMORY) and not chosen:
        cur.execute(f"SET memory_limit = '{SIGMA_MEMORY}'")
    try:
        return _prepare(cur, rules, workers, hosts)
    finally:
        cur.execute(f"SET memory_limit = '{before}'")


SIGMA_MEMORY = "2GB"


def _bytes(size: str) -> float:
    """DuckDB's memory sizes ('488.2 MiB', '2GB') in bytes."""
    m = re.match(r"^\s*([\d.]+)\s*([KMGT]?)(i?)B?\s*$", size, re.I)
    if not m:
        return float("inf")
    base = 1024.0 if m.group(3) else 1000.0
    return float(m.group(1)) * base ** " KMGT".index(m.group(2).upper() or " ")


def passes(rules: list[Rule]) -> dict[str, list[Rule]]:
    """The Sigma rules by the events their pass reads (SQL over `events e`): one pass per
    logsource (compiling a pass costs more than reading a few events again), reading only the
    events its rules can match when every rule names its event IDs."""
    grouped: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.sigma_logsource and rule.sigma_condition:
            grouped.setdefault(rule.sigma_logsource, []).append(rule)
    by_source: dict[str, list[Rule]] = {}
    for where, group in grouped.items():
        if all(r.sigma_event_ids for r in group):
            ids = sorted({i for r in group for i in r.sigma_event_ids})
            where = f"({where}) AND e.event_id IN ({', '.join(map(str, ids))})"
        by_source[where] = group
    return by_source


def _prepare(cur: Any, rules: list[Rule], workers: int, hosts: list[str] | None) -> list[str]:
    import contextlib
    import queue
    import threading

    from .store import only_hosts

    by_source = passes(rules)
    todo: queue.Queue[tuple[str, list[Rule]] | list[tuple[str, list[Rule]]]] = queue.Queue()
    # The logsources whose rules read fields share one scan of the event data (each document is
    # read once, not once per logsource: reading a logsource's events reads the documents of every
    # event between them); those with keyword rules read whole documents, one logsource at a time,
    # beside it.
    plain: list[tuple[str, list[Rule]]] = []
    keyword: list[tuple[str, list[Rule]]] = []
    for where, group in by_source.items():
        (keyword if any(WHOLE_EVENT in (r.sigma_condition or "") for r in group) else plain).append((where, group))
    if plain:
        todo.put(plain)
    for item in sorted(keyword, key=lambda kv: -len(kv[1])):  # the biggest first
        todo.put(item)
    failed: list[str] = []
    parts: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        mine = cur.cursor()  # its own connection: its own temp tables
        try:
            mine.execute(HITS_DDL)
            with only_hosts(mine, hosts) if hosts is not None else contextlib.nullcontext():
                while True:
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, list):
                        failed.extend(_shared_pass(mine, item))
                    else:
                        failed.extend(_source_pass(mine, *item))
            parts.append(mine.sql("SELECT * FROM sigma_hits").to_arrow_table())
        except BaseException as exc:  # reaches the caller below
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=work, name=f"sigma-{n}") for n in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for n, part in enumerate(parts):
        name = f"_sigma_part{n}"
        cur.register(name, part)
        try:
            cur.execute(f"INSERT INTO sigma_hits SELECT * FROM {name}")
        finally:
            cur.unregister(name)
    return failed


def _source_pass(cur: Any, where: str, group: list[Rule]) -> list[str]:
    """Every rule of one logsource whose rules search whole documents (keywords), over its events
    a range at a time: a document is wide and rarely repeats, so each event is evaluated as it is.
    A batch that fails is run rule by rule; a rule that fails alone is reported once and left out
    of later batches."""
    fields = _field_columns(group)
    used = _used_columns(fields)
    typed = "".join(f", {TYPED_COLUMNS[c]} AS {c}" for c in used if c in TYPED_COLUMNS)
    ev = _Evaluator(fields.rules, "_sigma_source")
    for lo, hi in _ranges(cur, where, CHUNK // 10):
        span = f"eid BETWEEN {lo} AND {hi}"
        cur.execute(SOURCE_SQL.format(where=f"({where}) AND e.{span}", range=span, typed=typed,
                                      columns=fields.columns, values=fields.values, whole=fields.whole))
        ev.run(cur)
    cur.execute("DROP TABLE IF EXISTS _sigma_source")
    return ev.failed


def _shared_pass(cur: Any, passes: list[tuple[str, list[Rule]]]) -> list[str]:
    """Every rule of the logsources given, over one scan of their events' data, a range at a time
    (memory stays bounded on a large case). In one statement per range, each event is extracted
    once per logsource it belongs to (`pass`), with that logsource's fields, and the events are
    grouped by logsource and by the values its conditions read, exactly (GROUP BY holds NULLs
    equal): only the distinct combinations are kept as text, each with its events. The
    combinations are collected over the ranges (a host runs the same programs with the same
    command lines all day: the benchmark case's 1M process creations hold 1,851), evaluated once
    each, and their matches joined back to their events."""
    plans = []
    for n, (where, group) in enumerate(passes):
        fields = _field_columns(group)
        used = _used_columns(fields)
        ev = _Evaluator(fields.rules, f"(SELECT e.k, {_derived(used, fields)} FROM _sigma_values e WHERE e.pass = {n}) e")
        plans.append((n, where, fields, used, ev))
    typed: dict[str, list[int]] = {}  # each typed column the conditions read: the passes reading it
    for n, _, fields, used, _ in plans:
        for column in used:
            if column not in fields.index:
                typed.setdefault(column.removeprefix("l_"), []).append(n)
    members = ", ".join(f"CASE WHEN ({where}) THEN {n} END" for n, where, *_ in plans)
    extract = " ".join(f"WHEN {n} THEN {fields.values}" for n, _, fields, *_ in plans if fields.names)
    columns = "".join(f", CASE WHEN d.pass IN ({', '.join(map(str, ns))}) THEN d.{c} END AS {c}"
                      for c, ns in sorted(typed.items()))
    names = "pass, v" + "".join(f", {c}" for c in sorted(typed))
    any_source = " OR ".join(f"({where})" for _, where, *_ in plans)
    fresh = True
    for lo, hi in _ranges(cur, any_source, CHUNK):
        span = f"eid BETWEEN {lo} AND {hi}"
        cur.execute(SCAN_SQL.format(range=span, where=f"({any_source}) AND e.{span}", members=members,
                                    extract=f"CASE d.pass {extract} END" if extract else "NULL::VARCHAR[]",
                                    columns=columns, typed="".join(f", e.{c}" for c in sorted(typed)), names=names))
        if fresh:
            cur.execute(f"CREATE OR REPLACE TEMP TABLE _sigma_values AS SELECT 0::BIGINT AS k, {names} FROM _sigma_chunk LIMIT 0")
            cur.execute("""CREATE OR REPLACE TEMP TABLE _sigma_rows (eid BIGINT, ts TIMESTAMP, host VARCHAR,
                "user" VARCHAR, logon_id UBIGINT, k BIGINT)""")
            cur.execute("CREATE OR REPLACE TEMP TABLE _sigma_matched (rule VARCHAR, k BIGINT)")
            fresh = False
        on = " AND ".join(f"c.{c} IS NOT DISTINCT FROM v.{c}" for c in names.split(", "))
        cur.execute(f"""INSERT INTO _sigma_values
            SELECT (SELECT count(*) FROM _sigma_values) + row_number() OVER (), * FROM (
                SELECT {names} FROM _sigma_chunk EXCEPT SELECT {names} FROM _sigma_values)""")
        cur.execute(f"""INSERT INTO _sigma_rows SELECT ev.eid, ev.ts, ev.host, ev."user", ev.logon_id, k FROM (
            SELECT v.k, unnest(c.evs) AS ev FROM _sigma_chunk c JOIN _sigma_values v ON {on})""")
        if cur.execute("SELECT count(*) FROM _sigma_values").fetchall()[0][0] > MAX_VALUES:
            _end_segment(cur, [ev for *_, ev in plans])  # values that rarely repeat: evaluate these
            fresh = True
    if not fresh:
        _end_segment(cur, [ev for *_, ev in plans])
    for name in ("_sigma_chunk", "_sigma_values", "_sigma_rows", "_sigma_matched"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    return [f for *_, ev in plans for f in ev.failed]


# One range of the events of the shared scan's logsources, one row per event and logsource it
# belongs to (`pass`) with that logsource's fields extracted from its document (`v`, one parse)
# and the typed columns it reads, grouped by those values, with the events of each combination.
SCAN_SQL = """CREATE OR REPLACE TEMP TABLE _sigma_chunk AS
    SELECT {names}, list({{'eid': eid, 'ts': ts, 'host': _host, 'user': "user", 'logon_id': logon_id}}) AS evs
    FROM (SELECT d.pass, d.eid, d.ts, d._host, d."user", d.logon_id, {extract} AS v{columns}
          FROM (SELECT e.eid, e.ts, e.host AS _host, coalesce(e.subject_user, e.target_user) AS "user",
                       nullif(e.subject_logon_id, 0) AS logon_id{typed}, d.data, d.raw,
                       unnest(list_filter([{members}], lambda x: x IS NOT NULL)) AS pass
                FROM events e JOIN (SELECT * FROM event_data WHERE {range}) d USING (eid)
                WHERE {where}) d)
    GROUP BY {names}"""
MAX_VALUES = 300_000  # distinct combinations held before they are evaluated


def _derived(used: list[str], fields: _Fields) -> str:
    """The columns a logsource's conditions read, made from a combination of `_sigma_values`: its
    fields from `v` (m<i> as extracted, lm<i> lowered), its typed columns (l_<typed> lowered)."""
    made = []
    for column in used:
        if column in fields.index:
            i, lowered = fields.index[column]
            made.append(f"{'lower(' if lowered else ''}e.v[{i}]{')' if lowered else ''} AS {column}")
        else:
            made.append(f"{TYPED_COLUMNS.get(column, 'e.' + column)} AS {column}")
    return ", ".join(made)


def _end_segment(cur: Any, evaluators: list[_Evaluator]) -> None:
    """The collected combinations evaluated, their matches joined back to their events. Binding
    thousands of conditions costs more than evaluating them over a few thousand combinations, so
    half of the logsources are evaluated on a second connection, over a copy of the combinations
    (a temp table is its connection's own)."""
    import threading

    share = sorted(evaluators, key=lambda ev: -len(ev.rules))
    mine, theirs = share[0::2], share[1::2]
    found: list[Any] = []
    errors: list[BaseException] = []

    def other() -> None:
        con = cur.cursor()
        try:
            con.register("_sigma_values", values)
            con.execute("CREATE OR REPLACE TEMP TABLE _sigma_matched (rule VARCHAR, k BIGINT)")
            for ev in theirs:
                ev.run(con)
            found.append(con.sql("SELECT * FROM _sigma_matched").to_arrow_table())
        except BaseException as exc:  # reaches the caller below
            errors.append(exc)
        finally:
            con.close()

    helper = None
    if sum(len(ev.rules) for ev in theirs) >= BATCH:  # worth a second connection
        values = cur.sql("SELECT * FROM _sigma_values").to_arrow_table()
        helper = threading.Thread(target=other, name="sigma-evaluate")
        helper.start()
    else:
        mine = share
    for ev in mine:
        ev.run(cur)
    if helper is not None:
        helper.join()
        if errors:
            raise errors[0]
        cur.register("_sigma_matched_other", found[0])
        try:
            cur.execute("INSERT INTO _sigma_matched SELECT * FROM _sigma_matched_other")
        finally:
            cur.unregister("_sigma_matched_other")
    cur.execute("""INSERT INTO sigma_hits SELECT m.rule, r.eid, r.ts, r.host, r."user", r.logon_id
        FROM _sigma_rows r JOIN _sigma_matched m USING (k)""")
    cur.execute("DELETE FROM _sigma_matched")


class _Evaluator:
    """One logsource's rules, run in batches over `source`: the events of `_sigma_source`, or the
    value combinations of `_sigma_values` with the columns the conditions read."""

    def __init__(self, rules: list[Rule], source: str) -> None:
        self.rules = rules
        self.source = source
        self.dead: set[str] = set()
        self.failed: list[str] = []

    def run(self, cur: Any) -> None:
        live = [r for r in self.rules if r.id not in self.dead]
        for i in range(0, len(live), BATCH):
            batch = live[i:i + BATCH]
            try:
                _pass(cur, batch, self.source)
            except Exception:
                for rule in batch:
                    try:
                        _pass(cur, [rule], self.source)
                    except Exception as exc:
                        self.dead.add(rule.id)
                        self.failed.append(f"{rule.source}: rule {rule.id}: {str(exc).splitlines()[0]}")


def _used_columns(fields: _Fields) -> list[str]:
    """The columns of `_sigma_source` the rules' conditions read (what decides their outcome)."""
    known = {"host", "whole"} | set(TYPED_COLUMNS) | set(fields.names)
    used = {m.group(1) for r in fields.rules for m in re.finditer(r"\be\.(\w+)", r.sigma_condition or "")} & known
    return sorted(used) or ["event_id"]


def _ranges(cur: Any, where: str, size: int) -> list[tuple[int, int]]:
    """eid ranges of at most `size` of the logsource's events each (the event data is read over
    each range only: its first to its last event); none when it has no events."""
    n, lo, hi = cur.execute(f"SELECT count(*), min(eid), max(eid) FROM events e WHERE {where}").fetchall()[0]
    if n == 0:
        return []
    if n <= size:
        return [(int(lo), int(hi))]
    rows = cur.execute(f"""SELECT min(eid), max(eid) FROM (
        SELECT eid, (row_number() OVER (ORDER BY eid) - 1) // {size} AS k FROM events e WHERE {where})
        GROUP BY k ORDER BY k""").fetchall()
    return [(int(lo), int(hi)) for lo, hi in rows]


_LOOKUP = re.compile(r"e\.(l?m)\['([^']*)'\]")


@dataclass
class _Fields:
    """What one logsource's pass extracts from its events' data, for SOURCE_SQL."""

    rules: list[Rule]  # their conditions reading the columns below
    names: list[str]  # the columns of the rules' fields (m<i> original, lm<i> lowered)
    index: dict[str, tuple[int, bool]]  # each of those columns: its field's place in `v`, lowered?
    columns: str  # those columns, as SQL over `v`
    values: str  # the one multi-path extraction of the fields from a document: `v`
    whole: str  # the whole document, when a keyword rule searches it


def _field_columns(rules: list[Rule]) -> _Fields:
    """The rules with each field lookup (`e.m['F']` original, `e.lm['F']` lowered) rewritten to a
    column of `_sigma_source`, and what makes those columns."""
    from dataclasses import replace

    found = sorted({(m.group(1), m.group(2)) for r in rules for m in _LOOKUP.finditer(r.sigma_condition or "")})
    names = sorted({name for _, name in found})
    index = {name: i + 1 for i, name in enumerate(names)}  # DuckDB lists count from 1
    column = {(kind, name): f"{kind}{index[name]}" for kind, name in found}
    columns = "".join(f", {'lower(' if kind == 'lm' else ''}e.v[{index[name]}]{')' if kind == 'lm' else ''} AS {col}"
                      for (kind, name), col in column.items())
    paths = ", ".join("'$.\"" + name + "\"'" for name in names)
    # A JSON shape's fields are in `data`; an EVTX record's under Event.EventData of `raw`.
    raw_paths = ", ".join("'$.Event.EventData.\"" + name + "\"'" for name in names)
    values = (f"CASE WHEN d.data IS NOT NULL THEN json_extract_string(d.data, [{paths}]) "
              f"ELSE json_extract_string(d.raw, [{raw_paths}]) END") if names else "NULL"
    keywords = any(WHOLE_EVENT in (r.sigma_condition or "") for r in rules)
    whole = (", CAST(coalesce(d.data, json_extract(d.raw, '$.Event.EventData')) AS VARCHAR) AS whole"
             if keywords else "")
    columns += ", e.whole" if keywords else ""
    out = []
    for rule in rules:
        condition = _LOOKUP.sub(lambda m: f"e.{column[(m.group(1), m.group(2))]}", rule.sigma_condition or "")
        out.append(replace(rule, sigma_condition=condition))
    return _Fields(out, list(column.values()) + (["whole"] if keywords else []),
                   {col: (index[name], kind == "lm") for (kind, name), col in column.items()}, columns, values, whole)


def _pass(cur: Any, rules: list[Rule], source: str) -> None:
    """The hits of `rules` (all of one logsource) among the rows of `source`: the events of
    `_sigma_source` into `sigma_hits`, or the value combinations of `_sigma_values` into
    `_sigma_matched`."""
    cases = ", ".join(f"CASE WHEN coalesce(({r.sigma_condition}), FALSE) THEN '{r.id.replace(chr(39), chr(39) * 2)}' END"
                      for r in rules)
    if source != "_sigma_source":
        cur.execute(f"""INSERT INTO _sigma_matched
            SELECT unnest(matched), k FROM (
                SELECT e.k, list_filter([{cases}], lambda x: x IS NOT NULL) AS matched FROM {source})
            WHERE len(matched) > 0""")
        return
    cur.execute(f"""INSERT INTO sigma_hits
        SELECT unnest(matched), eid, ts, host, "user", logon_id FROM (
            SELECT e.eid, e.ts, e.host, e."user", e.logon_id, list_filter([{cases}], lambda x: x IS NOT NULL) AS matched
            FROM _sigma_source e)
        WHERE len(matched) > 0""")
