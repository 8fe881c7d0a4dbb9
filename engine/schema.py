"""The case file's tables.

`events` is narrow and physically sorted by `pos`, so a timeline window is a range scan over one
row group. The wide parts of an event (its flattened event data and the original document) live in
`event_data`, keyed by the immutable `eid`, so re-sorting `events` after an ingest never rewrites them.
"""

from __future__ import annotations

SCHEMA_VERSION = 3

# (name, SQL type, meaning). The order here is the column order of `events`.
CORE_COLUMNS: list[tuple[str, str, str]] = [
    ("eid", "BIGINT", "immutable event id: source_id << 32 | sequence in source"),
    ("pos", "BIGINT", "dense position in (ts, host, channel, record_id, eid) order; NULL until ordered"),
    ("ts", "TIMESTAMP", "the event's own time, UTC"),
    ("utc_time", "TIMESTAMP", "Sysmon UtcTime when the event carries one, UTC"),
    ("host", "VARCHAR", "originating computer as logged"),
    ("channel", "VARCHAR", "event log channel, canonical case"),
    ("provider", "VARCHAR", "event provider"),
    ("event_id", "INTEGER", "event ID"),
    ("record_id", "BIGINT", "EventRecordID"),
    ("level", "SMALLINT", "event level (0 LogAlways, 1 critical … 5 verbose)"),
    ("user_sid", "VARCHAR", "System/Security UserID"),
    ("source_id", "INTEGER", "sources.source_id of the file it came from"),
]

HOT_COLUMNS: list[tuple[str, str, str]] = [
    ("subject_user", "VARCHAR", "SubjectUserName (Sysmon: account part of User; PowerShell 800/4103: UserId/User)"),
    ("subject_domain", "VARCHAR", "SubjectDomainName (Sysmon: domain part of User)"),
    ("subject_sid", "VARCHAR", "SubjectUserSid"),
    ("subject_logon_id", "UBIGINT", "SubjectLogonId (Sysmon: LogonId)"),
    ("target_user", "VARCHAR", "TargetUserName (RDP events: the account connecting)"),
    ("target_domain", "VARCHAR", "TargetDomainName"),
    ("target_sid", "VARCHAR", "TargetUserSid / TargetSid"),
    ("target_logon_id", "UBIGINT", "TargetLogonId"),
    ("linked_logon_id", "UBIGINT", "TargetLinkedLogonId (UAC split token)"),
    ("logon_guid", "VARCHAR", "LogonGuid, lower case without braces"),
    ("logon_type", "SMALLINT", "LogonType"),
    ("auth_package", "VARCHAR", "AuthenticationPackageName"),
    ("logon_process", "VARCHAR", "LogonProcessName, trimmed"),
    ("src_ip", "VARCHAR", "IpAddress / Sysmon SourceIp / RDP client address ('-' dropped, ::ffff: unwrapped)"),
    ("src_port", "INTEGER", "IpPort / Sysmon SourcePort"),
    ("dst_ip", "VARCHAR", "Sysmon DestinationIp"),
    ("dst_port", "INTEGER", "Sysmon DestinationPort"),
    ("dst_host", "VARCHAR", "Sysmon DestinationHostname / 4648 TargetServerName / Sysmon 22 QueryName"),
    ("workstation", "VARCHAR", "WorkstationName / 4776 Workstation / 4778-4779 ClientName"),
    ("status", "UINTEGER", "Status (NTSTATUS or Kerberos code)"),
    ("substatus", "UINTEGER", "SubStatus"),
    ("process_guid", "VARCHAR", "ProcessGuid (Sysmon 10: SourceProcessGUID), lower case without braces"),
    ("process_pid", "BIGINT", "the acting/new process: Sysmon ProcessId, 4688 NewProcessId"),
    ("process_image", "VARCHAR", "Image / NewProcessName / ProcessName / SourceImage"),
    ("command_line", "VARCHAR", "CommandLine / service ImagePath (7045) / ServiceFileName (4697) / "
                                "PowerShell host application (400-800, 4103)"),
    ("parent_guid", "VARCHAR", "ParentProcessGuid, lower case without braces"),
    ("parent_pid", "BIGINT", "Sysmon ParentProcessId; 4688 ProcessId (the creator)"),
    ("parent_image", "VARCHAR", "ParentImage / ParentProcessName"),
    ("parent_command_line", "VARCHAR", "ParentCommandLine"),
    ("target_image", "VARCHAR", "Sysmon 8/10 TargetImage"),
    ("target_guid", "VARCHAR", "Sysmon 8/10 TargetProcessGUID"),
    ("target_pid", "BIGINT", "Sysmon 8/10 TargetProcessId"),
    ("granted_access", "UINTEGER", "Sysmon 10 GrantedAccess / 4656 AccessMask"),
    ("object_name", "VARCHAR", "ObjectName / TargetFilename / TargetObject / ShareName"),
    ("privileges", "VARCHAR", "PrivilegeList, single-space separated"),
    ("service_name", "VARCHAR", "ServiceName"),
    ("task_name", "VARCHAR", "TaskName"),
    ("script_block_id", "VARCHAR", "PowerShell ScriptBlockId"),
    ("script_part", "INTEGER", "PowerShell MessageNumber"),
    ("script_parts", "INTEGER", "PowerShell MessageTotal"),
    ("script_text", "VARCHAR", "PowerShell ScriptBlockText (4104), module logging Payload (4103)"),
    # Added in schema 2.
    ("member_name", "VARCHAR", "group events: the member added or removed (MemberName's CN, or the "
                               "name another event of the case gives its MemberSid)"),
    ("member_sid", "VARCHAR", "group events: MemberSid"),
    # Added in schema 3: what a logon session says about how it was made (domain.md §2).
    ("elevated_token", "BOOLEAN", "4624 ElevatedToken (%%1842 yes, %%1843 no)"),
    ("impersonation_level", "VARCHAR", "4624 ImpersonationLevel as logged (%%1832 identification, "
                                       "%%1833 impersonation, %%1840 delegation)"),
    ("lm_package", "VARCHAR", "4624 LmPackageName (NTLM V1, NTLM V2), '-' dropped"),
    ("key_length", "INTEGER", "4624 KeyLength (0 on an NTLM logon without a session key)"),
    ("failure_reason", "VARCHAR", "4625 FailureReason as logged (%%2313 …)"),
]

# The columns each schema version added: a case of the version before gains them, filled in from
# its stored documents (Case._upgrade). Schema 2 also changed what existing columns hold (RDP
# accounts and addresses, 4776 workstations…), which adding columns cannot repair: a schema 1 case
# is refused with how to ingest its evidence again.
ADDED_IN: dict[int, list[str]] = {
    3: ["elevated_token", "impersonation_level", "lm_package", "key_length", "failure_reason"],
}
OLDEST_UPGRADABLE = 2

EVENT_COLUMNS = CORE_COLUMNS + HOT_COLUMNS
EVENT_COLUMN_NAMES = [c[0] for c in EVENT_COLUMNS]
COLUMN_TYPES = {c[0]: c[1] for c in EVENT_COLUMNS}
COLUMN_DOCS = {c[0]: c[2] for c in EVENT_COLUMNS}

ORDER_KEY = "ts, host, channel, record_id, eid"


def ddl() -> list[str]:
    cols = ",\n  ".join(f"{name} {typ}" for name, typ, _ in EVENT_COLUMNS)
    return [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        """CREATE TABLE IF NOT EXISTS sources (
  source_id INTEGER PRIMARY KEY,
  path VARCHAR NOT NULL,
  sha256 VARCHAR NOT NULL,
  bytes BIGINT,
  shape VARCHAR,
  parser VARCHAR,
  records BIGINT,
  duplicates BIGINT,
  skipped BIGINT,
  first_error VARCHAR,
  seconds DOUBLE,
  ingested_at TIMESTAMP,
  complete BOOLEAN DEFAULT TRUE
)""",
        """CREATE TABLE IF NOT EXISTS ingest_errors (
  source_id INTEGER,
  path VARCHAR,
  location VARCHAR,
  message VARCHAR
)""",
        f"CREATE TABLE IF NOT EXISTS events (\n  {cols}\n)",
        # The documents are most of a case. DuckDB leaves long strings uncompressed by default;
        # zstd shrinks them ~10-40x and commits faster, since far fewer bytes reach the disk.
        "CREATE TABLE IF NOT EXISTS event_data (eid BIGINT, data VARCHAR USING COMPRESSION zstd, "
        "raw VARCHAR USING COMPRESSION zstd)",
        "CREATE TABLE IF NOT EXISTS fields (name VARCHAR, events BIGINT)",
        """CREATE TABLE IF NOT EXISTS marks (
  eid BIGINT PRIMARY KEY,
  tag VARCHAR,
  created TIMESTAMP
)""",
        """CREATE TABLE IF NOT EXISTS saved_filters (
  name VARCHAR PRIMARY KEY,
  filter VARCHAR
)""",
    ]
