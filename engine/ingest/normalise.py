"""Raw documents → normalised event rows, set-wise in DuckDB SQL.

Readers hand over each record as its original JSON text and nothing else; per-record Python would
be the bottleneck. Here each document is parsed once by DuckDB (vectorised, on every core): one
`json_extract_string` with a list of paths pulls the shape's system fields and every hot
event-data field at once. Where a shape keeps its event data in a nested object (EVTX's
`Event.EventData`), that object is not copied out: `raw` keeps the document and field look-ups read
it in place, because re-serialising the object cost more than every other step together.

Shapes (domain.md §5), decided per document from its top-level keys:
  evtx   `{"Event": {"System": …, "EventData" | "UserData": …}}`: the Rust parser, evtx_dump JSON,
         and evtx_dump's `*_attributes` variant
  ecs    winlogbeat 7/8 (`winlog.*`); module-processed fields are moved back into the event data
  wlb6   winlogbeat 6 (`event_data`, `log_name`, `computer_name`)
  nxlog  NXLog-style flat JSON: event data at the top level
  azure  Azure Monitor / Sentinel SecurityEvent rows: event data as an XML string
An Elasticsearch hit (`_source` wrapper) is unwrapped first.

Columns of the result: seq, shape, every events column but eid/pos/source_id, data, doc_is, doc,
keys (the event-data field names), zone_probe and zoneless (see _nxlog_zone).
`data` is the event-data object when it is not simply a part of `raw` (see DATA_PATH).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

# Where the event-data fields of each shape are found: in `data` (a JSON object), or in `raw`.
# A field look-up anywhere (filters, detail) goes through data_field_sql().
EVTX_EVENT_DATA = "$.Event.EventData"

# Hot event-data keys, promoted to typed columns by _hot_columns().
DATA_KEYS = [
    "SubjectUserName", "SubjectDomainName", "SubjectUserSid", "SubjectLogonId",
    "TargetUserName", "TargetDomainName", "TargetUserSid", "TargetSid", "TargetLogonId", "TargetLinkedLogonId",
    "LogonGuid", "LogonType", "AuthenticationPackageName", "LogonProcessName",
    "IpAddress", "IpPort", "WorkstationName", "Status", "SubStatus",
    "ProcessGuid", "ProcessId", "Image", "CommandLine", "NewProcessId", "NewProcessName", "ProcessName",
    "ParentProcessGuid", "ParentProcessId", "ParentImage", "ParentProcessName", "ParentCommandLine",
    "SourceProcessGUID", "SourceProcessGuid", "SourceProcessId", "SourceImage",
    "TargetImage", "TargetProcessGUID", "TargetProcessGuid", "TargetProcessId", "GrantedAccess", "AccessMask",
    "ObjectName", "TargetFilename", "TargetObject", "ShareName", "PrivilegeList", "ServiceName", "TaskName",
    "ScriptBlockId", "MessageNumber", "MessageTotal", "ScriptBlockText",
    "User", "LogonId", "SourceIp", "SourcePort", "DestinationIp", "DestinationPort", "DestinationHostname",
    "TargetServerName", "UtcTime",
    # RDP: 1149 (Param1-3), LocalSessionManager 21-25 (User, Address), 4778/4779
    "Param1", "Param2", "Param3", "Address", "AccountName", "AccountDomain", "ClientName", "ClientAddress", "LogonID",
    "ImagePath", "ServiceFileName", "Workstation", "QueryName", "MemberName", "MemberSid", "SourceUser",
    # System 104: the log that was cleared (UserData LogFileCleared)
    "Channel",
    # Windows Filtering Platform (5152-5159), Sysmon 6/7, Service Control Manager 7034-7040
    "SourceAddress", "DestAddress", "DestPort", "Application", "ImageLoaded", "param1",
    # Windows PowerShell 400-800 in winlogbeat: the unnamed data's context parts
    "param2", "param3",
    # PowerShell module logging (4103)
    "ContextInfo", "Payload",
    # Sysmon 17/18 (named pipes) and 9 (raw disk reads)
    "PipeName", "Device",
    # 4624 / 4625: how a logon was made, and why one failed
    "ElevatedToken", "ImpersonationLevel", "LmPackageName", "KeyLength", "FailureReason",
]
WINDOWS_POWERSHELL = "Windows PowerShell"
# Fields that EVTX keeps in UserData (the object stored as `data`) for some events, and in EventData
# for others.
USER_DATA_KEYS = frozenset({"SubjectUserName", "SubjectDomainName", "SubjectUserSid", "SubjectLogonId",
                            "Param1", "Param2", "Param3", "User", "Address", "Channel"})
RCM_CHANNEL = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
LSM_CHANNEL = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"

# Events named by channel and id, where more than one rule reads them. (Event ids alone are shared:
# RdpCoreTS logs its own 104, other providers their own 400.)
_RCM_AUTH = f"(channel = '{RCM_CHANNEL}' AND event_id = 1149)"
_LSM_SESSION = f"(channel = '{LSM_CHANNEL}' AND event_id IN (21, 22, 23, 24, 25))"
SECURITY_LOG_CLEARED = "(channel = 'Security' AND event_id = 1102)"
# System 104 names the log that was cleared (Security has its own 1102); only the Eventlog's.
SYSTEM_LOG_CLEARED = ("(channel = 'System' AND event_id = 104 "
                       "AND ends_with(lower(coalesce(provider, 'eventlog')), 'eventlog'))")
# Windows PowerShell 400-800 (the classic log) and module logging (4103).
_PS_HOST = f"(channel = '{WINDOWS_POWERSHELL}' AND event_id IN (400, 403, 600, 800))"
_PS_MODULE = ("(channel IN ('Microsoft-Windows-PowerShell/Operational', 'PowerShellCore/Operational') "
              "AND event_id = 4103)")

Get = Callable[[str], str]  # name → SQL expression of that value as text (NULL when absent)


class _Paths:
    """A list of JSON paths extracted in one call; `get(name)` is the SQL for one of them."""

    def __init__(self, column: str, paths: dict[str, str]) -> None:
        self.column = column
        self.paths = paths
        self.index = {name: i + 1 for i, name in enumerate(paths)}

    def extract(self, doc: str) -> str:
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in self.paths.values())
        return f"json_extract_string({doc}, [{listed}]) AS {self.column}"

    def get(self, name: str) -> str:
        return f"{self.column}[{self.index[name]}]"


def _data_paths(prefix: str) -> dict[str, str]:
    return {f"d.{k}": f'{prefix}."{k}"' for k in DATA_KEYS}


# ---------------------------------------------------------------------------------------------------
# Shared rules

_LEVEL_NAMES = (
    "CASE lower({x}) WHEN 'information' THEN 4 WHEN 'informational' THEN 4 WHEN 'info' THEN 4 "
    "WHEN 'warning' THEN 3 WHEN 'warn' THEN 3 WHEN 'error' THEN 2 WHEN 'critical' THEN 1 "
    "WHEN 'verbose' THEN 5 WHEN 'debug' THEN 5 ELSE try_cast({x} AS SMALLINT) END"
)


def _level(expr: str) -> str:
    return _LEVEL_NAMES.format(x=expr)


# Channels as Windows names them; sources also write them in lower case.
CANONICAL_CHANNELS = [
    "Security", "System", "Application", "Setup", "Windows PowerShell", "ForwardedEvents",
    "Microsoft-Windows-Sysmon/Operational",
    "Microsoft-Windows-PowerShell/Operational",
    "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
    "Microsoft-Windows-TaskScheduler/Operational",
    "Microsoft-Windows-Windows Defender/Operational",
    "Microsoft-Windows-WMI-Activity/Operational",
    "Microsoft-Windows-Bits-Client/Operational",
    "Microsoft-Windows-SMBServer/Security",
    "Microsoft-Windows-RemoteDesktopServices-RdpCoreTS/Operational",
    "Microsoft-Windows-NTLM/Operational",
    "Microsoft-Windows-DNS-Client/Operational",
]
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"


def _canonical_channel(expr: str) -> str:
    whens = " ".join(f"WHEN '{c.lower()}' THEN '{c}'" for c in CANONICAL_CHANNELS)
    return f"CASE lower({expr}) {whens} ELSE {expr} END"


def _utc(expr: str) -> str:
    # Text with an offset is converted; text without one is UTC (the session's zone). FILETIME 0
    # (1601-01-01, a zeroed record) says no time: the event has none, sorts with the timeless at
    # the end instead of first, and its document keeps the value as written.
    return f"nullif(try_cast({expr} AS TIMESTAMPTZ)::TIMESTAMP, TIMESTAMP '1601-01-01 00:00:00')"


def _int(expr: str, typ: str) -> str:
    # Hex with a 0x prefix or decimal, whatever the case, with any surrounding whitespace;
    # anything else is NULL, never an error.
    return f"try_cast(trim({expr}, ' ' || chr(9) || chr(10) || chr(13)) AS {typ})"


def _guid(expr: str) -> str:
    return f"nullif(lower(trim(trim({expr}), '{{}}')), '')"


def _ip(expr: str) -> str:
    return (
        f"CASE WHEN trim({expr}) IN ('-', '') THEN NULL "
        f"WHEN lower(trim({expr})) LIKE '::ffff:%.%' THEN substr(trim({expr}), 8) ELSE trim({expr}) END"
    )


def canonical_ip(text: str) -> str:
    """One spelling per address, so one filter value finds them all: IPv6 compressed in lower case
    (RFC 5952: Sysmon writes `0:0:0:0:0:0:0:1` where the Security log writes `::1`), and an
    IPv4-mapped IPv6 address as its IPv4 address. Text that is no address is returned unchanged."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    if isinstance(addr, ipaddress.IPv6Address) and "." in text:
        # ISATAP, NAT64 and IPv4-compatible forms: the dotted IPv4 part is what a reader looks for.
        return text.strip().lower()
    return str(addr)


def _dash_null(expr: str) -> str:
    return f"nullif(nullif(trim({expr}), '-'), '')"


def hot_column_exprs(d: Get) -> dict[str, str]:
    """SQL of each typed hot column, from the event-data fields (domain.md §2–4). The expressions
    read the row's normalised `channel`, `event_id`, `provider` and `user_sid` besides `d`."""
    sysmon = f"channel = '{SYSMON_CHANNEL}'"
    user = d("User")
    # Sysmon's User (SourceUser on 8 and 10, Sysmon 13 on) is DOMAIN\user; a bare name (no domain)
    # is still the user.
    sysmon_account = f"coalesce({user}, {d('SourceUser')})"
    sysmon_user = f"CASE WHEN {sysmon} THEN {_dash_null(f'string_split({sysmon_account}, chr(92))[-1]')} END"
    sysmon_domain = (f"CASE WHEN {sysmon} AND contains({sysmon_account}, '\\') "
                     f"THEN string_split({sysmon_account}, '\\')[1] END")
    # RDP: who connected from where (domain.md §1). 1149 names the account in Param1/Param2 and the
    # client in Param3; LocalSessionManager has User (DOMAIN\user) and Address; 4778/4779 Account*
    # and Client*. "LOCAL" and "Unknown" are what Windows writes when there is no remote client.
    rcm, lsm = _RCM_AUTH, _LSM_SESSION
    rdp = "(channel = 'Security' AND event_id IN (4778, 4779))"
    lsm_user = f"CASE WHEN {lsm} THEN nullif(string_split({user}, '\\')[-1], '') END"
    lsm_domain = f"CASE WHEN {lsm} AND contains({user}, '\\') THEN string_split({user}, '\\')[1] END"

    def no_client(expr: str) -> str:
        return f"CASE WHEN upper(trim({expr})) IN ('LOCAL', 'UNKNOWN') THEN NULL ELSE {expr} END"

    rdp_client = no_client(f"CASE WHEN {rcm} THEN {d('Param3')} WHEN {rdp} THEN {d('ClientAddress')} "
                           f"WHEN {lsm} THEN {d('Address')} END")
    service = "((channel = 'System' AND event_id = 7045) OR (channel = 'Security' AND event_id = 4697))"
    # Service Control Manager's state events name the service in their first positional field.
    service_state = "(channel = 'System' AND event_id IN (7034, 7035, 7036, 7040))"
    # Windows Filtering Platform connections, binds, listens and drops: Source*/Dest* as the event
    # names them (the initiating side is Source), and the program as a \device\harddiskvolume path.
    wfp = "(channel = 'Security' AND event_id BETWEEN 5152 AND 5159)"
    # Windows PowerShell 400/403/600/800 carry the host's command line (HostApplication) in their
    # text: often the only trace of `powershell -enc …` where neither Sysmon nor 4688 is on.
    # Module logging (4103) writes the same as `Name = value` lines of its ContextInfo.
    ps_host, ps_module = _PS_HOST, _PS_MODULE
    loaded = f"({sysmon} AND event_id IN (6, 7))"

    # …and 800 and 4103 the account that ran the pipeline (DOMAIN\user).
    ps_account = f"CASE WHEN {ps_host} THEN {d('UserId')} WHEN {ps_module} THEN {d('ContextUser')} END"
    ps_user = f"nullif(string_split({ps_account}, chr(92))[-1], '')"
    ps_domain = f"CASE WHEN contains({ps_account}, chr(92)) THEN string_split({ps_account}, chr(92))[1] END"
    explicit = "coalesce(channel = 'Security' AND event_id = 4648, false)"
    member = _dash_null(d("MemberName"))
    cleared = SYSTEM_LOG_CLEARED
    cols = {
        "utc_time": _utc(d("UtcTime")),
        "subject_user": f"coalesce({_dash_null(d('SubjectUserName'))}, {sysmon_user}, {ps_user})",
        "subject_domain": f"coalesce({_dash_null(d('SubjectDomainName'))}, {sysmon_domain}, {ps_domain})",
        # System 104 logs the account that cleared the log as the event's own user.
        "subject_sid": f"coalesce({_dash_null(d('SubjectUserSid'))}, CASE WHEN {cleared} THEN user_sid END)",
        "subject_logon_id": _int(
            f"coalesce({d('SubjectLogonId')}, CASE WHEN {sysmon} THEN {d('LogonId')} END)", "UBIGINT"),
        "target_user": (f"coalesce({_dash_null(d('TargetUserName'))}, CASE WHEN {rcm} THEN {_dash_null(d('Param1'))} "
                        f"WHEN {rdp} THEN {_dash_null(d('AccountName'))} END, {lsm_user})"),
        "target_domain": (f"coalesce({_dash_null(d('TargetDomainName'))}, CASE WHEN {rcm} THEN "
                          f"{_dash_null(d('Param2'))} WHEN {rdp} THEN {_dash_null(d('AccountDomain'))} END, {lsm_domain})"),
        # Account and group management events (4720, 4740, 4732 …) and Kerberos (4768, 4771) name
        # it TargetSid; logon events TargetUserSid.
        "target_sid": _dash_null(f"coalesce({d('TargetUserSid')}, {d('TargetSid')})"),
        "target_logon_id": _int(f"coalesce({d('TargetLogonId')}, CASE WHEN {rdp} THEN {d('LogonID')} END)", "UBIGINT"),
        "linked_logon_id": _int(d("TargetLinkedLogonId"), "UBIGINT"),
        "logon_guid": _guid(d("LogonGuid")),
        "logon_type": _int(d("LogonType"), "SMALLINT"),
        "auth_package": _dash_null(d("AuthenticationPackageName")),
        "logon_process": _dash_null(d("LogonProcessName")),
        # 4648's network address is the server the credentials were used against, not a source.
        "src_ip": _ip(f"coalesce(CASE WHEN NOT {explicit} THEN {d('IpAddress')} END, {d('SourceIp')}, {rdp_client}, "
                      f"CASE WHEN {wfp} THEN {d('SourceAddress')} END)"),
        "src_port": _int(f"coalesce(CASE WHEN NOT {explicit} THEN {_dash_null(d('IpPort'))} END, {d('SourcePort')})",
                         "INTEGER"),
        "dst_ip": _ip(f"coalesce({d('DestinationIp')}, CASE WHEN {explicit} THEN {d('IpAddress')} END, "
                      f"CASE WHEN {wfp} THEN {d('DestAddress')} END)"),
        "dst_port": _int(f"coalesce({d('DestinationPort')}, CASE WHEN {explicit} THEN {_dash_null(d('IpPort'))} END, "
                         f"CASE WHEN {wfp} THEN {d('DestPort')} END)", "INTEGER"),
        "dst_host": _dash_null(f"coalesce({d('DestinationHostname')}, {d('TargetServerName')}, "
                               f"CASE WHEN {sysmon} AND event_id = 22 THEN {d('QueryName')} END)"),
        "workstation": _dash_null(no_client(
            f"coalesce({d('WorkstationName')}, CASE WHEN channel = 'Security' AND event_id = 4776 "
            f"THEN {d('Workstation')} WHEN {rdp} THEN {d('ClientName')} END)")),
        "status": _int(d("Status"), "UINTEGER"),
        "substatus": _int(d("SubStatus"), "UINTEGER"),
        "process_guid": _guid(
            f"coalesce({d('ProcessGuid')}, {d('SourceProcessGUID')}, {d('SourceProcessGuid')})"),
        # 4688's ProcessId is the creator (the parent); everywhere else it is the acting process.
        "process_pid": _int(
            f"coalesce({d('NewProcessId')}, {d('SourceProcessId')}, "
            f"CASE WHEN event_id IS DISTINCT FROM 4688 THEN {d('ProcessId')} END)", "BIGINT"),
        "process_image": _dash_null(
            f"coalesce({d('NewProcessName')}, {d('Image')}, {d('SourceImage')}, {d('ProcessName')}, "
            f"CASE WHEN {wfp} THEN {d('Application')} END)"),
        # A service's ImagePath is the command it runs (often the attack itself: %COMSPEC% /c …).
        "command_line": (f"coalesce({d('CommandLine')}, CASE WHEN {service} "
                         f"THEN coalesce({d('ImagePath')}, {d('ServiceFileName')}) END, "
                         f"CASE WHEN {ps_host} THEN {d('HostApplication')} "
                         f"WHEN {ps_module} THEN {d('ContextHostApplication')} END)"),
        "parent_guid": _guid(d("ParentProcessGuid")),
        "parent_pid": _int(
            f"coalesce({d('ParentProcessId')}, CASE WHEN event_id = 4688 THEN {d('ProcessId')} END)", "BIGINT"),
        "parent_image": _dash_null(f"coalesce({d('ParentImage')}, {d('ParentProcessName')})"),
        "parent_command_line": d("ParentCommandLine"),
        "target_image": d("TargetImage"),
        "target_guid": _guid(f"coalesce({d('TargetProcessGUID')}, {d('TargetProcessGuid')})"),
        "target_pid": _int(d("TargetProcessId"), "BIGINT"),
        # The winlogbeat security module turns AccessMask into a list of one.
        "granted_access": _int(
            f"coalesce({d('GrantedAccess')}, CASE WHEN left({d('AccessMask')}, 1) = '[' "
            f"THEN json_extract_string({d('AccessMask')}, '$[0]') ELSE {d('AccessMask')} END)", "UINTEGER"),
        "object_name": _dash_null(
            f"coalesce({d('ObjectName')}, {d('TargetFilename')}, {d('TargetObject')}, {d('ShareName')}, "
            f"CASE WHEN {cleared} THEN {d('Channel')} WHEN {loaded} THEN {d('ImageLoaded')} "
            f"WHEN {sysmon} AND event_id IN (17, 18) THEN {d('PipeName')} "
            f"WHEN {sysmon} AND event_id = 9 THEN {d('Device')} END)"),
        "privileges": (
            f"CASE WHEN left(trim({d('PrivilegeList')}), 1) = '[' "
            f"THEN array_to_string(try_cast({d('PrivilegeList')}::JSON AS VARCHAR[]), ' ') "
            f"ELSE nullif(regexp_replace(trim({d('PrivilegeList')}), '\\s+', ' ', 'g'), '-') END"),
        "service_name": f"coalesce({d('ServiceName')}, CASE WHEN {service_state} THEN {d('param1')} END)",
        "task_name": d("TaskName"),
        "script_block_id": _guid(d("ScriptBlockId")),
        "script_part": _int(d("MessageNumber"), "INTEGER"),
        "script_parts": _int(d("MessageTotal"), "INTEGER"),
        "script_text": f"coalesce({d('ScriptBlockText')}, CASE WHEN {ps_module} THEN {d('Payload')} END)",
        # A domain member is a DN (CN=name,OU=…); a local one is often "-" with only the SID.
        "member_name": (f"CASE WHEN {member} LIKE 'CN=%' THEN regexp_replace(regexp_extract({member}, "
                        f"'^CN=((?:[^,\\\\]|\\\\.)+)', 1), '\\\\(.)', '\\1', 'g') ELSE {member} END"),
        "member_sid": _dash_null(d("MemberSid")),
        # Windows writes %%1842 / %%1843; a collector that renders messages writes Yes / No.
        "elevated_token": (f"CASE lower(trim({d('ElevatedToken')})) WHEN '%%1842' THEN true WHEN 'yes' THEN true "
                           f"WHEN 'true' THEN true WHEN '%%1843' THEN false WHEN 'no' THEN false "
                           f"WHEN 'false' THEN false END"),
        "impersonation_level": _dash_null(f"trim({d('ImpersonationLevel')})"),
        "lm_package": _dash_null(f"trim({d('LmPackageName')})"),
        "key_length": _int(d("KeyLength"), "INTEGER"),
        "failure_reason": _dash_null(f"trim({d('FailureReason')})"),
    }
    return cols


def _hot_columns(d: Get) -> str:
    """The typed hot columns, from the event-data fields (domain.md §2–4)."""
    return ",\n    ".join(f"{expr} AS {name}" for name, expr in hot_column_exprs(d).items())


# Hot fields of shapes whose event data is built into `data`: one more extraction, from it.
_DATA = _Paths("H", {k: f'$."{k}"' for k in DATA_KEYS})
# The fields EVTX keeps in UserData for some events, read from `data` (see USER_DATA_KEYS).
_USER_DATA = _Paths("U", {k: f'$."{k}"' for k in sorted(USER_DATA_KEYS)})


def _shape_select(shape: str, source: str, extract: str, system: dict[str, str], d: Get | None,
                  data: str, doc_is: str, data_paths: _Paths | None = None,
                  wrap: Callable[[Get], Get] | None = None, free_text: str = "NULL",
                  ps_context: str = "NULL") -> str:
    """One shape's rows: system columns from `system`, then the hot columns, `data` and `doc_is`.

    `doc_is` says where the original document is stored: 'raw' (kept beside `data`), or 'data'
    (the document is its own event data). The document rides along as `doc`: joining it back from
    the batch afterwards made DuckDB hash the largest column.
    Nested because the hot columns read the normalised channel and event_id (and, when `d` is
    None, the fields of the freshly built `data`).
    """
    sys_cols = ",\n      ".join(f"{expr} AS {name}" for name, expr in system.items())
    inner = f"""(
    SELECT *,
      {sys_cols},
      {data} AS data
    FROM (SELECT *, {extract} FROM {source})
  )"""
    if d is None:
        inner = f"(SELECT *, {_DATA.extract('data')} FROM {inner})"
        d = _DATA.get
    elif data_paths is not None:
        # Fields some events keep in `data`: one parse of it, and only where there is one.
        listed = data_paths.extract("data").removesuffix(f" AS {data_paths.column}")
        inner = f"(SELECT *, CASE WHEN data IS NOT NULL THEN {listed} END AS {data_paths.column} FROM {inner})"
    if wrap is not None:
        d = wrap(d)
    # The unnamed text is cut into lines once per row, only for the few events that have it,
    # and each field is the line that starts with its name. DuckDB evaluates a subquery's column
    # again for each reference to it, so searching the whole text once per field cost up to
    # 100 µs a row on PowerShell's 5 kB `-enc` lines (measured: 4x slower JSON normalising).
    inner = f"""(SELECT *, {_line_field('_lines', 'HostApplication=')} AS _host_app,
                   {_line_field('_lines', 'UserId=')} AS _user_id,
                   {_line_field('_ci_lines', 'Host Application = ', indent='spaces')} AS _ci_host_app,
                   {_line_field('_ci_lines', 'User = ', indent='spaces', last=True)} AS _ci_user
                 FROM (SELECT *, CASE WHEN {_PS_HOST} THEN {_lines(ps_context)} END AS _lines,
                         CASE WHEN {_PS_MODULE} THEN {_lines(d('ContextInfo'))} END AS _ci_lines
                       FROM (SELECT *, CASE WHEN {_TEXT_EVENTS} THEN {free_text} END::VARCHAR AS _text
                             FROM {inner})))"""
    d = _with_free_text(d)
    # The event-data field names, for the filter language's catalogue. Listed here, in the
    # parallel scan of the batch, rather than by a later pass over the stored documents. A document
    # that is its own event data had its keys listed when it was classified.
    keys = ("NULL::VARCHAR[]" if doc_is == "data" else
            f"CASE WHEN data IS NOT NULL THEN json_keys(data) ELSE json_keys(doc, '{EVTX_EVENT_DATA}') END"
            if shape == "evtx" else "json_keys(data)")
    zone = ("zone_probe, zoneless" if "zoneless" in system
            else "NULL::INTEGER AS zone_probe, false AS zoneless")
    return f"""
  SELECT seq, source_id, '{shape}' AS shape, ts, host, channel, provider, event_id, record_id, level, user_sid,
    {_hot_columns(d)},
    data::JSON AS data, '{doc_is}' AS doc_is, doc, {keys} AS keys, {zone}
  FROM {inner}"""


def _lines(text: str) -> str:
    return f"string_split({text}, chr(10))"


def _line_field(lines: str, label: str, indent: str = "tab", *, last: bool = False) -> str:
    """The value of the first (or `last`) of `lines` that starts with `label` (a constant) after
    its indent: a tab for Windows PowerShell 400-800's `Name=value` lines, spaces for 4103's
    ContextInfo `Name = value` (where a line starting with "User = " is not "Connected User = ").

    Which match is taken is a defence: the fields are read where nothing a user typed comes before
    them. In 400-800's context UserId and HostApplication precede the echoed CommandLine; in 4103's
    ContextInfo the command line (Host Application) precedes User, so User is the last one."""
    assert re.fullmatch(r"[\w =]+", label), label
    # The indent as Windows writes it (a tab; eight spaces in ContextInfo) is part of the prefix:
    # trimming every line, or the 5 kB value, cost ten times the rest (split_part cuts the CR).
    prefix = f"chr(9) || '{label}'" if indent == "tab" else f"'        {label}'"
    skip = len(label) + (1 if indent == "tab" else 8) + 1
    value = f"list_filter({lines}, lambda x: starts_with(x, {prefix}))[{-1 if last else 1}]"
    return f"nullif(split_part({value}[{skip}:], chr(13), 1), '')"


_FREE_TEXT_FIELDS = {"HostApplication": "_host_app", "UserId": "_user_id",
                     "ContextHostApplication": "_ci_host_app", "ContextUser": "_ci_user"}


def _with_free_text(d: Get) -> Get:
    """`d`, plus the fields classic events (Windows PowerShell 400-800) write as tab-indented
    `Name=value` lines in their unnamed text, and module logging (4103) as `Name = value` lines of
    its ContextInfo (see _line_field)."""
    def get(key: str) -> str:
        return _FREE_TEXT_FIELDS.get(key) or d(key)
    return get


# The events whose unnamed text (`_text`) is read: Windows PowerShell 400-800 in every shape, and
# the UserData events whose fields NXLog keeps only in the Message (_NXLOG_FALLBACKS).
# The event id is tested first: it rules out nearly every row before the channel is compared.
_TEXT_EVENTS = (f"event_id IN (400, 403, 600, 800, 1102, 104, 1149, 21, 22, 23, 24, 25) AND "
                f"({_PS_HOST} OR {SECURITY_LOG_CLEARED} OR (channel = 'System' AND event_id = 104) "
                f"OR {_RCM_AUTH} OR {_LSM_SESSION})")


# Unnamed event data (classic providers): winlogbeat names its parts param1, param2, …
# winlogbeat names the unnamed Data elements param1, param2…: the context is param2 of 800 and
# param3 of 400-600 (see the EVTX shape), read from the one extraction of `data` (H).
_PARAMS_CONTEXT = f"CASE WHEN event_id = 800 THEN {_DATA.get('param2')} ELSE {_DATA.get('param3')} END"


# ---------------------------------------------------------------------------------------------------
# EVTX (the Rust parser, python-evtx via the same layout, evtx_dump JSON)

_EVTX = _Paths("L", {
    "time": '$.Event.System.TimeCreated."#attributes".SystemTime',
    "time2": "$.Event.System.TimeCreated_attributes.SystemTime",
    "host": "$.Event.System.Computer",
    "channel": "$.Event.System.Channel",
    "provider": '$.Event.System.Provider."#attributes".Name',
    "provider2": "$.Event.System.Provider_attributes.Name",
    "eid": "$.Event.System.EventID",
    "eid_text": '$.Event.System.EventID."#text"',
    "record": "$.Event.System.EventRecordID",
    "level": "$.Event.System.Level",
    "sid": '$.Event.System.Security."#attributes".UserID',
    "sid2": "$.Event.System.Security_attributes.UserID",
    "user_data": "$.Event.UserData",
    "unnamed": '$.Event.EventData.Data."#text"',
    **_data_paths(EVTX_EVENT_DATA),
})


def _evtx_select(source: str) -> str:
    g = _EVTX.get
    # UserData wraps its fields in one provider-specific element (e.g. LogFileCleared): that inner
    # object is the event data. It is rare, so copying it out costs nothing that matters.
    # evtx_dump's attribute-split variant puts the element's attributes in a sibling `<name>_attributes`.
    # Chosen by position, not through a path built from the name: any name is a valid key.
    user_data = (f"list_filter(list_zip(json_keys({g('user_data')}), json_extract({g('user_data')}, '$.*')), "
                 f"lambda p: NOT ends_with(p[1], '_attributes'))[1][2]")
    system = {
        "ts": _utc(f"coalesce({g('time')}, {g('time2')})"),
        "host": g("host"),
        "channel": _canonical_channel(g("channel")),
        "provider": f"coalesce({g('provider')}, {g('provider2')})",
        "event_id": f"try_cast(coalesce({g('eid_text')}, {g('eid')}) AS INTEGER)",
        "record_id": f"coalesce(try_cast({g('record')} AS BIGINT), rec_id)",
        "level": f"try_cast({g('level')} AS SMALLINT)",
        "user_sid": f"nullif(coalesce({g('sid')}, {g('sid2')}), '')",
    }

    def d(key: str) -> str:
        return (f"coalesce({g('d.' + key)}, {_USER_DATA.get(key)})" if key in USER_DATA_KEYS
                else g("d." + key))

    data = f"CASE WHEN {g('user_data')} IS NOT NULL THEN coalesce({user_data}, {g('user_data')}) END"
    # The unnamed Data element that holds the context: the 2nd of 800 (the 1st is the pipeline's
    # command, the 3rd its parameter values), the 3rd of 400-600 (after the engine states). Only it
    # is read, so nothing a user typed can pose as its fields.
    unnamed = g("unnamed")
    context = (f"CASE WHEN left({unnamed}, 1) = '[' "
               f"THEN json_extract_string({unnamed}, '$[*]')[CASE WHEN event_id = 800 THEN 2 ELSE 3 END] END")
    return _shape_select("evtx", source, _EVTX.extract("doc"), system, d, data, "raw", _USER_DATA,
                         ps_context=context)


# ---------------------------------------------------------------------------------------------------
# NXLog flat JSON: the document is its own event data.

_NXLOG = _Paths("L", {
    "eid": "$.EventID",
    "host": "$.Hostname",
    "channel": "$.Channel",
    "provider": "$.SourceName",
    "provider2": "$.ProviderName",
    "record": "$.RecordNumber",
    "event_time": "$.EventTime",
    "received": "$.EventReceivedTime",
    "received_utc": '$."@timestamp"',
    "time_created": "$.TimeCreated",
    "severity": "$.Severity",
    "level": "$.Level",
    "sid": "$.UserID",
    "message": "$.Message",
    **_data_paths("$"),
})


def _nxlog_ts() -> str:
    """NXLog's EventTime is local time with no zone. The receive time comes both local
    (EventReceivedTime) and UTC (@timestamp); their difference, rounded to 15 minutes, is the
    collector's UTC offset, which turns EventTime into UTC without losing its own precision.
    Sysmon's UtcTime, where present, is the true event time and wins."""
    g = _NXLOG.get
    event_local = f"try_cast({g('event_time')} AS TIMESTAMP)"
    recv_local = f"try_cast({g('received')} AS TIMESTAMP)"
    recv_utc = _utc(g("received_utc"))
    offset = (f"to_minutes(CAST(round(date_diff('second', coalesce({recv_local}, {event_local}), {recv_utc})"
              " / 900.0) * 15 AS BIGINT))")
    return (f"coalesce({_utc(g('d.UtcTime'))}, CASE WHEN {recv_utc} IS NOT NULL THEN {event_local} + {offset} END, "
            f"{_utc(g('time_created'))}, {event_local}, {recv_utc})")


def _nxlog_zone() -> dict[str, str]:
    """Producers that write TimeCreated instead of EventTime (six Security-Datasets files) write it
    in the collector's local time, marked as UTC, with @timestamp the same: a Security event lands
    hours away from the Sysmon events around it. Sysmon's UtcTime beside the same TimeCreated
    gives the offset: `zone_probe` is it (in minutes, to the quarter hour) on every such line, and
    `zoneless` marks the lines timed by TimeCreated. The ingest learns the offset per file and host
    from the probes and shifts the zoneless lines (pipeline._fix_zones)."""
    g = _NXLOG.get
    created = _utc(g("time_created"))
    utc_time = _utc(g("d.UtcTime"))
    event_local = f"try_cast({g('event_time')} AS TIMESTAMP)"
    return {
        "zone_probe": (f"CASE WHEN {event_local} IS NULL AND {utc_time} IS NOT NULL AND {created} IS NOT NULL "
                       f"THEN CAST(round(date_diff('second', {created}, {utc_time}) / 900.0) * 15 AS INTEGER) END"),
        "zoneless": (f"{utc_time} IS NULL AND {created} IS NOT NULL "
                     f"AND ({event_local} IS NULL OR {_utc(g('received_utc'))} IS NULL)"),
    }


def _nxlog_select(source: str) -> str:
    g = _NXLOG.get
    system = {
        "ts": _nxlog_ts(),
        "host": g("host"),
        "channel": _canonical_channel(g("channel")),
        "provider": f"coalesce({g('provider')}, {g('provider2')})",
        "event_id": f"try_cast({g('eid')} AS INTEGER)",
        "record_id": f"try_cast({g('record')} AS BIGINT)",
        "level": f"coalesce(try_cast({g('level')} AS SMALLINT), {_level(g('severity'))})",
        "user_sid": g("sid"),
        **_nxlog_zone(),
    }

    def d(key: str) -> str:
        whens = " ".join(f"WHEN {when} THEN {expr}" for when, expr in _NXLOG_FALLBACKS.get(key, []))
        if key == "Channel":
            # The top-level Channel is the event's own; only the Message names the cleared log.
            return f"CASE {whens} END"
        return f"coalesce({g('d.' + key)}, CASE {whens} END)" if whens else g("d." + key)

    # Stored once: the document verbatim is the event data, so `raw` would only repeat it.
    return _shape_select("nxlog", source, _NXLOG.extract("doc"), system, d, "NULL", "data",
                         free_text=g("message"), ps_context=_NXLOG_CONTEXT)


# NXLog renders Windows PowerShell 400-800 as one Message: the pipeline's command first (800), then
# "Context Information:" (800) or "Details:" (400-600) and the fields. The section is read only
# when its heading occurs once: a command that repeats it could otherwise pose as the fields.
_NXLOG_CONTEXT = ("CASE WHEN len(string_split(_text, CASE WHEN event_id = 800 THEN 'Context Information:' "
                  "ELSE 'Details:' END)) = 2 THEN string_split(_text, CASE WHEN event_id = 800 "
                  "THEN 'Context Information:' ELSE 'Details:' END)[2] END")


def _message_line(label: str, *, last: bool = False) -> str:
    """The value of a `Label: value` line of the rendered Message (`_text`). `last` takes the last
    such line: the lines after a client-chosen value (1149's User) cannot be forged by a user name
    with line breaks in it, the lines before them can."""
    pattern = f"'(?m)^[ \\t]*{label}:[ \\t]*([^\\r\\n]*)'"
    found = (f"regexp_extract_all(_text, {pattern}, 1)[-1]" if last
             else f"regexp_extract(_text, {pattern}, 1)")
    return f"nullif(trim({found}), '')"


# NXLog renders an event's UserData as nothing but its Message: for these events the fields a
# responder needs (who cleared the log, who connected over RDP from where) are read back from the
# Message's fixed template when the document has no field of that name. System 104's Message names
# only the log; the account that cleared it is the event's own user (UserID), which NXLog also
# writes as AccountName and Domain.
_NXLOG_FALLBACKS: dict[str, list[tuple[str, str]]] = {
    # A Message rendered with names resolved says CORP\bob here: only a SID is a SID.
    "SubjectUserSid": [(SECURITY_LOG_CLEARED, f"CASE WHEN {_message_line('Security ID')} LIKE 'S-1-%' "
                                           f"THEN {_message_line('Security ID')} END")],
    "SubjectUserName": [(SECURITY_LOG_CLEARED, _message_line("Account Name")),
                        (SYSTEM_LOG_CLEARED, "json_extract_string(doc, '$.AccountName')")],
    "SubjectDomainName": [(SECURITY_LOG_CLEARED, _message_line("Domain Name")),
                          (SYSTEM_LOG_CLEARED, "json_extract_string(doc, '$.Domain')")],
    "SubjectLogonId": [(SECURITY_LOG_CLEARED, _message_line("Logon ID"))],
    "Param1": [(_RCM_AUTH, _message_line("User"))],
    "Param2": [(_RCM_AUTH, _message_line("Domain", last=True))],
    "Param3": [(_RCM_AUTH, _message_line("Source Network Address", last=True))],
    "User": [(_LSM_SESSION, _message_line("User"))],
    "Address": [(_LSM_SESSION, _message_line("Source Network Address", last=True))],
    "Channel": [(SYSTEM_LOG_CLEARED, "nullif(regexp_extract(_text, '^The (.+) log file was cleared', 1), '')")],
}


# ---------------------------------------------------------------------------------------------------
# Winlogbeat 7/8 (ECS). The security and sysmon modules move fields out of winlog.event_data into
# ECS names; they are put back under their Windows names so nothing is silently lost.

_ECS = _Paths("L", {
    "ts": '$."@timestamp"',
    "channel": "$.winlog.channel",
    "host": "$.winlog.computer_name",
    "provider": "$.winlog.provider_name",
    "eid": "$.winlog.event_id",
    "code": "$.event.code",
    "record": "$.winlog.record_id",
    "level": "$.log.level",
    "sid": "$.winlog.user.identifier",
    "logon_id": "$.winlog.logon.id",
    "logon_type": "$.winlog.logon.type",
    "src_ip": "$.source.ip",
    "src_port": "$.source.port",
    "src_domain": "$.source.domain",
    "dst_ip": "$.destination.ip",
    "dst_port": "$.destination.port",
    "dst_domain": "$.destination.domain",
    "net_transport": "$.network.transport",
    "p_pid": "$.process.pid",
    "p_exe": "$.process.executable",
    "p_cmd": "$.process.command_line",
    "p_guid": "$.process.entity_id",
    "p_cwd": "$.process.working_directory",
    "pp_pid": "$.process.parent.pid",
    "pp_exe": "$.process.parent.executable",
    "pp_cmd": "$.process.parent.command_line",
    "pp_guid": "$.process.parent.entity_id",
    "h_sha1": "$.process.hash.sha1",
    "h_md5": "$.process.hash.md5",
    "h_sha256": "$.process.hash.sha256",
    "h_imphash": "$.process.pe.imphash",
    "u_name": "$.user.name",
    "u_domain": "$.user.domain",
    "u_id": "$.user.id",
    "ut_name": "$.user.target.name",
    "ut_domain": "$.user.target.domain",
    "ut_id": "$.user.target.id",
    "ug_name": "$.user.target.group.name",
    "ug_domain": "$.user.target.group.domain",
    "ug_id": "$.user.target.group.id",
    "g_name": "$.group.name",
    "g_domain": "$.group.domain",
    "g_id": "$.group.id",
    "file_path": "$.file.path",
    "dns_name": "$.dns.question.name",
    "reg_path": "$.registry.path",
    "ps_text": "$.powershell.file.script_block_text",
    "ps_id": "$.powershell.file.script_block_id",
    "ps_seq": "$.powershell.sequence",
    "ps_total": "$.powershell.total",
})
_SYS = f"lower({_ECS.get('channel')}) = lower('{SYSMON_CHANNEL}')"
_EID = "ecs_eid"
# (Windows key, ECS path, when): which Windows field an ECS field came from depends on the event.
_ECS_BACKFILL: list[tuple[str, str, str]] = [
    ("IpAddress", "src_ip", f"NOT {_SYS}"),
    ("IpPort", "src_port", f"NOT {_SYS}"),
    ("WorkstationName", "src_domain", f"NOT {_SYS}"),
    ("NewProcessId", "p_pid", f"{_EID} = 4688"),
    ("NewProcessName", "p_exe", f"{_EID} = 4688"),
    ("ProcessId", "p_pid", f"{_EID} IS DISTINCT FROM 4688 AND NOT ({_SYS} AND {_EID} = 10)"),
    ("ProcessName", "p_exe", f"NOT {_SYS} AND {_EID} IS DISTINCT FROM 4688"),
    ("ParentProcessName", "pp_exe", f"NOT {_SYS}"),
    ("CommandLine", "p_cmd", "TRUE"),
    ("SourceIp", "src_ip", _SYS),
    ("SourcePort", "src_port", _SYS),
    ("SourceHostname", "src_domain", _SYS),
    ("DestinationIp", "dst_ip", _SYS),
    ("DestinationPort", "dst_port", _SYS),
    ("DestinationHostname", "dst_domain", _SYS),
    ("Protocol", "net_transport", _SYS),
    ("ProcessGuid", "p_guid", f"{_SYS} AND {_EID} IS DISTINCT FROM 10"),
    ("Image", "p_exe", f"{_SYS} AND {_EID} IS DISTINCT FROM 10"),
    ("CurrentDirectory", "p_cwd", _SYS),
    ("ParentProcessGuid", "pp_guid", _SYS),
    ("ParentProcessId", "pp_pid", _SYS),
    ("ParentImage", "pp_exe", _SYS),
    ("ParentCommandLine", "pp_cmd", _SYS),
    ("SourceProcessGUID", "p_guid", f"{_SYS} AND {_EID} = 10"),
    ("SourceProcessId", "p_pid", f"{_SYS} AND {_EID} = 10"),
    ("SourceImage", "p_exe", f"{_SYS} AND {_EID} = 10"),
    ("TargetFilename", "file_path", _SYS),
    ("QueryName", "dns_name", _SYS),
    ("TargetObject", "reg_path", _SYS),
    ("LogonId", "logon_id", _SYS),
    # The sysmon module drops UtcTime and overwrites @timestamp with it.
    ("UtcTime", "ts", _SYS),
    # The powershell module empties event_data for 4104 into powershell.*.
    ("ScriptBlockText", "ps_text", "TRUE"),
    ("ScriptBlockId", "ps_id", "TRUE"),
    ("MessageNumber", "ps_seq", "TRUE"),
    ("MessageTotal", "ps_total", "TRUE"),
]
# winlog.logon.id is the target LogonId for these events and the subject LogonId for the rest;
# user.* is the Target* account for these (the account logging on or asking for a ticket), the
# Subject* account otherwise. Where the event has both, the module puts the target in
# user.target.*, and a group's members event its group in user.target.group.* (elastic/beats
# security module golden files: 4720, 4740, 4732).
_TARGET_LOGON_EVENTS = "(4624, 4634, 4647)"
_TARGET_USER_EVENTS = "(4624, 4625, 4634, 4647, 4768, 4769, 4771, 4776)"
# Account management: the target account's SID is TargetSid (logon events say TargetUserSid).
_ACCOUNT_EVENTS = "(4720, 4722, 4723, 4724, 4725, 4726, 4738, 4740, 4767, 4781)"
# Group membership and group management: the event's Target* is the group.
_GROUP_EVENTS = ("(4727, 4728, 4729, 4730, 4731, 4732, 4733, 4734, 4735, 4737, 4744, 4745, 4746, 4747, 4748, "
                 "4749, 4750, 4751, 4752, 4753, 4754, 4755, 4756, 4757, 4758, 4759, 4760, 4761, 4762, 4763, 4764)")
LOGON_TYPE_NUMBERS = {
    "system": 0, "interactive": 2, "network": 3, "batch": 4, "service": 5, "unlock": 7,
    "networkcleartext": 8, "newcredentials": 9, "remoteinteractive": 10, "cachedinteractive": 11,
    "cachedremoteinteractive": 12, "cachedunlock": 13,
}


def _ecs_backfill() -> str:
    g = _ECS.get
    pairs = [f"'{key}', CASE WHEN {cond} THEN {g(path)} END" for key, path, cond in _ECS_BACKFILL]
    names = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in LOGON_TYPE_NUMBERS.items())
    subject = f"{_EID} NOT IN {_TARGET_USER_EVENTS} AND NOT {_SYS}"
    target = f"{_EID} IN {_TARGET_USER_EVENTS}"
    group = f"{_EID} IN {_GROUP_EVENTS}"
    pairs += [
        f"'TargetLogonId', CASE WHEN {_EID} IN {_TARGET_LOGON_EVENTS} THEN {g('logon_id')} END",
        f"'SubjectLogonId', CASE WHEN {_EID} NOT IN {_TARGET_LOGON_EVENTS} AND NOT {_SYS} THEN {g('logon_id')} END",
        f"'LogonType', CASE replace(lower({g('logon_type')}), ' ', '') {names} END",
        f"'TargetUserName', CASE WHEN {target} THEN {g('u_name')} WHEN {group} THEN coalesce({g('ug_name')}, {g('g_name')}) "
        f"ELSE {g('ut_name')} END",
        f"'TargetDomainName', CASE WHEN {target} THEN {g('u_domain')} WHEN {group} THEN coalesce({g('ug_domain')}, {g('g_domain')}) "
        f"ELSE {g('ut_domain')} END",
        f"'TargetUserSid', CASE WHEN {_EID} IN (4624, 4625, 4634, 4647) THEN {g('u_id')} END",
        f"'TargetSid', CASE WHEN {_EID} IN (4768, 4771) THEN {g('u_id')} WHEN {group} THEN coalesce({g('ug_id')}, {g('g_id')}) "
        f"WHEN {_EID} IN {_ACCOUNT_EVENTS} THEN {g('ut_id')} END",
        f"'MemberSid', CASE WHEN {group} THEN {g('ut_id')} END",
        f"'MemberName', CASE WHEN {group} THEN {g('ut_name')} END",
        f"'SubjectUserName', CASE WHEN {subject} THEN {g('u_name')} END",
        f"'SubjectDomainName', CASE WHEN {subject} THEN {g('u_domain')} END",
        f"'SubjectUserSid', CASE WHEN {subject} THEN {g('u_id')} END",
        f"'User', CASE WHEN {_SYS} AND {g('u_name')} IS NOT NULL "
        f"THEN concat_ws('\\', {g('u_domain')}, {g('u_name')}) END",
        f"'Hashes', CASE WHEN {_SYS} THEN nullif(concat_ws(',', "
        + ", ".join(f"'{label}=' || {g(p)}" for label, p in
                    (("SHA1", "h_sha1"), ("MD5", "h_md5"), ("SHA256", "h_sha256"), ("IMPHASH", "h_imphash")))
        + "), '') END",
    ]
    # Patching {} with an object drops its null members: only fields the document had survive.
    return f"json_merge_patch('{{}}', json_object({', '.join(pairs)}))"


def _merge(*objs: str) -> str:
    expr = "'{}'"
    for obj in objs:
        expr = f"json_merge_patch({expr}, coalesce(nullif({obj}, 'null'), '{{}}'))"
    return expr


def _ecs_select(source: str) -> str:
    g = _ECS.get
    event_data = "json_extract(doc, '$.winlog.event_data')"
    user_data = "json_extract(doc, '$.winlog.user_data')"
    system = {
        "ts": _utc(g("ts")),
        "host": g("host"),
        "channel": _canonical_channel(g("channel")),
        "provider": g("provider"),
        "event_id": _EID,
        "record_id": f"try_cast({g('record')} AS BIGINT)",
        "level": _level(g("level")),
        "user_sid": g("sid"),
    }
    inner = f"(SELECT *, coalesce(try_cast({g('eid')} AS INTEGER), try_cast({g('code')} AS INTEGER)) AS {_EID} " \
            f"FROM (SELECT *, {_ECS.extract('doc')} FROM {source}))"
    return _shape_select("ecs", inner, "NULL AS _none", system, None,
                         _merge(_ecs_backfill(), event_data, user_data), "raw", ps_context=_PARAMS_CONTEXT)


# ---------------------------------------------------------------------------------------------------
# Winlogbeat 6

_WLB6 = _Paths("L", {
    "ts": '$."@timestamp"',
    "channel": "$.log_name",
    "host": "$.computer_name",
    "provider": "$.source_name",
    "eid": "$.event_id",
    "record": "$.record_number",
    "level": "$.level",
    "sid": "$.user.identifier",
})


def _wlb6_select(source: str) -> str:
    g = _WLB6.get
    system = {
        "ts": _utc(g("ts")),
        "host": g("host"),
        "channel": _canonical_channel(g("channel")),
        "provider": g("provider"),
        "event_id": f"try_cast({g('eid')} AS INTEGER)",
        "record_id": f"try_cast({g('record')} AS BIGINT)",
        "level": _level(g("level")),
        "user_sid": g("sid"),
    }
    data = _merge("json_extract(doc, '$.event_data')", "json_extract(doc, '$.user_data')")
    return _shape_select("wlb6", source, _WLB6.extract("doc"), system, None, data, "raw", ps_context=_PARAMS_CONTEXT)


# ---------------------------------------------------------------------------------------------------
# Azure Monitor / Sentinel `SecurityEvent` and `WindowsEvent` rows: EventData is the XML (or JSON)
# of the event data, as a string, and its <Data Name="…"> elements become the event-data object;
# rows without it have their fields at the top level, like NXLog.

_AZURE = _Paths("L", {
    "ts": "$.TimeGenerated",
    "host": "$.Computer",
    "channel": "$.Channel",
    "provider": "$.EventSourceName",
    "provider2": "$.Provider",
    "eid": "$.EventID",
    "record": "$.EventRecordId",
    "level": "$.Level",
    "level2": "$.EventLevel",
    "sid": "$.UserId",
    "xml": "$.EventData",
})
_XML_DATA = r"""'<Data Name="([^"]*)"\s*(?:/>|>([^<]*)</Data>)'"""


def _xml_unescape(expr: str) -> str:
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "''"), ("&amp;", "&")):
        expr = f"replace({expr}, '{entity}', '{char}')"
    return expr


def _azure_select(source: str) -> str:
    g = _AZURE.get
    system = {
        "ts": _utc(g("ts")),
        "host": g("host"),
        "channel": _canonical_channel(g("channel")),
        "provider": f"coalesce({g('provider')}, {g('provider2')})",
        "event_id": f"try_cast({g('eid')} AS INTEGER)",
        "record_id": f"try_cast({g('record')} AS BIGINT)",
        "level": f"coalesce(try_cast({g('level2')} AS SMALLINT), {_level(g('level'))})",
        "user_sid": g("sid"),
    }
    xml = g("xml")
    data = (f"CASE WHEN left(ltrim({xml}), 1) = '{{' THEN {xml} "
            f"WHEN {xml} IS NOT NULL THEN to_json(map(regexp_extract_all({xml}, {_XML_DATA}, 1), "
            f"list_transform(regexp_extract_all({xml}, {_XML_DATA}, 2), "
            f"lambda v: {_xml_unescape('coalesce(v, ' + chr(39) + chr(39) + ')')}))) "
            # SecurityEvent rows of well-known events carry their fields at the top level instead.
            f"ELSE doc END")

    def event_data_only(get: Get) -> Get:
        # A row without EventData is its own data: its Channel is the event's, not a cleared log's.
        return lambda k: f"CASE WHEN {xml} IS NOT NULL THEN {get(k)} END" if k == "Channel" else get(k)

    return _shape_select("azure", source, _AZURE.extract("doc"), system, None, data, "raw", wrap=event_data_only)


# ---------------------------------------------------------------------------------------------------

SHAPE_SELECTS = {"evtx": _evtx_select, "nxlog": _nxlog_select, "ecs": _ecs_select, "wlb6": _wlb6_select,
                 "azure": _azure_select}


def classify_sql(batch: str) -> str:
    """(source_id, seq, line, k, shape) of each document of `batch(seq, rec_id, line, doc, source_id)`.

    Only the top-level keys `k` are read; 'hit' marks an Elasticsearch hit to unwrap and classify
    again. For a shape whose document is its own event data, `k` is also its field list.
    """
    return f"""
SELECT source_id, seq, line, k,
  CASE WHEN k IS NULL THEN 'malformed'
       WHEN list_contains(k, '_source') THEN 'hit'
       WHEN list_contains(k, 'Event') THEN 'evtx'
       WHEN list_contains(k, 'winlog') THEN 'ecs'
       WHEN list_contains(k, 'event_data') OR (list_contains(k, 'log_name') AND list_contains(k, 'event_id'))
            THEN 'wlb6'
       WHEN list_contains(k, 'TimeGenerated') AND list_contains(k, 'Computer') THEN 'azure'
       WHEN list_contains(k, 'EventID') THEN 'nxlog'
       ELSE 'unknown' END AS shape
FROM (SELECT source_id, seq, line, try(json_keys(doc)) AS k FROM {batch})
"""


def unwrap_hits_sql(batch: str, classified: str) -> str:
    """The `_source` documents of the hits in `batch`, as a batch of their own."""
    return f"""
SELECT b.seq, b.rec_id, b.line, json_extract(b.doc, '$._source')::VARCHAR AS doc, b.source_id
FROM {batch} b JOIN {classified} c USING (source_id, seq) WHERE c.shape = 'hit'
"""


def normalise_sql(docs: str, classified: str, shapes: list[str]) -> str:
    """Normalised rows of the given shapes: `docs` is a batch, `classified` its classify_sql rows."""
    # A semi-join: the hash table holds the small classified keys, never the documents.
    parts = [SHAPE_SELECTS[s](f"(SELECT * FROM {docs} b WHERE EXISTS (SELECT 1 FROM {classified} c "
                              f"WHERE c.source_id = b.source_id AND c.seq = b.seq AND c.shape = '{s}'))")
             for s in shapes]
    return "\nUNION ALL\n".join(parts)


def evtx_sql(batch: str) -> str:
    """Normalised rows straight from an EVTX parser's batch: its shape is known, no classifying."""
    return _evtx_select(batch)


def data_field_sql(key_param: str = "?") -> str:
    """SQL for one event-data field as text, wherever the row's shape keeps it.

    `key_param` is the placeholder for a JSON path ('$."Name"'), bound by the caller; never
    splice user text into it.
    """
    return (f"coalesce(json_extract_string(d.data, {key_param}), "
            f"json_extract_string(json_extract(d.raw, '{EVTX_EVENT_DATA}'), {key_param}))")
