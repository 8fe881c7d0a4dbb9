"""Decode raw Windows event field values into analyst-readable text.

Every decoder returns a short description meant to be shown *next to* the raw value, never in
place of it, or ``None`` when the value is unknown, malformed or needs no decoding. Decoders never
raise on bad input: event logs are hostile data.

Facts come from ``docs/domain.md`` (Microsoft audit documentation, Sysmon schema, winlogbeat,
SigmaHQ) and from ``winnt.h`` / the msobjs.dll message table for the access-right names.

Standard library only: the engine never imports textual or rich.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

__all__ = [
    "EVENT_NAMES",
    "KERBEROS_ENCRYPTION",
    "KERBEROS_STATUS",
    "LOGON_TYPES",
    "LSASS_SUSPICIOUS_MASKS",
    "MANDATORY_LABELS",
    "NTSTATUS",
    "PERCENT_STRINGS",
    "PROCESS_ACCESS_RIGHTS",
    "PROCESS_ALL_ACCESS",
    "PROCESS_ALL_ACCESS_LEGACY",
    "SENSITIVE_PRIVILEGES",
    "WELL_KNOWN_LOGON_IDS",
    "WELL_KNOWN_RIDS",
    "WELL_KNOWN_SIDS",
    "EncodedCommand",
    "access_mask",
    "channel_key",
    "decode_field",
    "event_name",
    "is_lsass",
    "kerberos_encryption",
    "kerberos_status",
    "logon_id",
    "logon_type",
    "mandatory_label",
    "ntstatus",
    "parse_hex",
    "parse_int",
    "percent_string",
    "powershell_encoded_command",
    "privileges",
    "sid",
    "token_elevation",
]

# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

LOGON_TYPES: Final[Mapping[int, str]] = MappingProxyType(
    {
        0: "System",
        2: "Interactive",
        3: "Network",
        4: "Batch",
        5: "Service",
        7: "Unlock",
        8: "NetworkCleartext",
        9: "NewCredentials",
        10: "RemoteInteractive",
        11: "CachedInteractive",
        12: "CachedRemoteInteractive",
        13: "CachedUnlock",
    }
)
"""4624/4625/4634 ``LogonType``. 1 and 6 are not used by Windows."""

NTSTATUS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0xC000005E: "no logon server available",
        0xC0000064: "user name does not exist",
        0xC000006A: "user name correct, password wrong",
        0xC000006D: "bad user name or authentication information (read SubStatus)",
        0xC000006E: "account restriction (valid credentials, policy blocked)",
        0xC000006F: "logon outside allowed hours",
        0xC0000070: "logon from unauthorised workstation",
        0xC0000071: "password expired",
        0xC0000072: "account disabled",
        0xC00000DC: "SAM server in wrong state",
        0xC0000133: "clock skew between DC and client",
        0xC000015B: "logon type not granted on this machine",
        0xC000018C: "trust relationship failed",
        0xC0000192: "Netlogon service not started",
        0xC0000193: "account expired",
        0xC0000224: "must change password at next logon",
        0xC0000234: "account locked out",
        0xC00002EE: "error during logon",
        0xC0000413: "authentication firewall: not allowed on this machine",
    }
)
"""4625 / 4776 ``Status`` and ``SubStatus`` codes (NTSTATUS)."""

KERBEROS_STATUS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x6: "principal unknown (KDC_ERR_C_PRINCIPAL_UNKNOWN)",
        0x12: "client revoked: disabled or locked out (KDC_ERR_CLIENT_REVOKED)",
        0x17: "password expired (KDC_ERR_KEY_EXPIRED)",
        0x18: "pre-authentication failed: bad password (KDC_ERR_PREAUTH_FAILED)",
        0x25: "clock skew too great (KRB_AP_ERR_SKEW)",
    }
)
"""4768 / 4769 / 4771 Kerberos ``Status`` codes."""

KERBEROS_ENCRYPTION: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x1: "DES-CBC-CRC",
        0x3: "DES-CBC-MD5",
        0x11: "AES128-CTS-HMAC-SHA1-96",
        0x12: "AES256-CTS-HMAC-SHA1-96",
        0x17: "RC4-HMAC (weak: RC4 where AES is expected)",
        0x18: "RC4-HMAC-EXP",
        0xFFFFFFFF: "none: failure event, no ticket issued",
    }
)
"""4768 / 4769 ``TicketEncryptionType``."""

_TOKEN_ELEVATION_STRINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "%%1936": "TokenElevationTypeDefault (1): full token, UAC off or built-in admin",
        "%%1937": "TokenElevationTypeFull (2): elevated",
        "%%1938": "TokenElevationTypeLimited (3): limited (filtered token)",
    }
)

PERCENT_STRINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # Standard access rights (AccessList of 4656/4663 …)
        "%%1537": "DELETE",
        "%%1538": "READ_CONTROL",
        "%%1539": "WRITE_DAC",
        "%%1540": "WRITE_OWNER",
        "%%1541": "SYNCHRONIZE",
        "%%1542": "ACCESS_SYS_SEC",
        # 4624 ImpersonationLevel
        "%%1832": "Identification",
        "%%1833": "Impersonation",
        "%%1840": "Delegation",
        # 4624 VirtualAccount / ElevatedToken
        "%%1842": "Yes",
        "%%1843": "No",
        # 4688 TokenElevationType
        **_TOKEN_ELEVATION_STRINGS,
        # 4625 FailureReason
        "%%2304": "error during logon",
        "%%2305": "account expired",
        "%%2306": "NetLogon not active",
        "%%2307": "account locked out",
        "%%2308": "logon type not granted at this machine",
        "%%2309": "password expired",
        "%%2310": "account disabled",
        "%%2311": "account logon time restriction",
        "%%2312": "user not allowed to log on at this computer",
        "%%2313": "unknown user name or bad password",
        # File object access rights
        "%%4416": "ReadData (or ListDirectory)",
        "%%4417": "WriteData (or AddFile)",
        "%%4418": "AppendData (or AddSubdirectory or CreatePipeInstance)",
        "%%4419": "ReadEA",
        "%%4420": "WriteEA",
        "%%4421": "Execute/Traverse",
        "%%4422": "DeleteChild",
        "%%4423": "ReadAttributes",
        "%%4424": "WriteAttributes",
        # Registry key access rights
        "%%4432": "Query key value",
        "%%4433": "Set key value",
        "%%4434": "Create sub-key",
        "%%4435": "Enumerate sub-keys",
        "%%4436": "Notify about changes to keys",
        "%%4437": "Create Link",
        # Process object access rights (msobjs.dll text; bit = 1 << (N - 4480))
        "%%4480": "Force process termination",
        "%%4481": "Create new thread in process",
        "%%4482": "Set process session ID",
        "%%4483": "Perform virtual memory operation",
        "%%4484": "Read from process memory",
        "%%4485": "Write to process memory",
        "%%4486": "Duplicate handle into or out of process",
        "%%4487": "Create a subprocess of process",
        "%%4488": "Set process quotas",
        "%%4489": "Set process information",
        "%%4490": "Query process information",
        "%%4491": "Set process termination port (bit 0x800: SUSPEND_RESUME today)",
    }
)
"""``%%NNNN`` message-table strings (msobjs.dll) that appear unrendered in exported event data."""

MANDATORY_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "S-1-16-0": "Untrusted Mandatory Level",
        "S-1-16-4096": "Low Mandatory Level",
        "S-1-16-8192": "Medium Mandatory Level",
        "S-1-16-8448": "Medium Plus Mandatory Level",
        "S-1-16-12288": "High Mandatory Level",
        "S-1-16-16384": "System Mandatory Level",
        "S-1-16-20480": "Protected Process Mandatory Level",
    }
)
"""4688 ``MandatoryLabel`` integrity SIDs."""

WELL_KNOWN_SIDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "S-1-0-0": "NULL SID",
        "S-1-1-0": "Everyone",
        "S-1-2-0": "LOCAL",
        "S-1-3-0": "CREATOR OWNER",
        "S-1-5-2": "NETWORK",
        "S-1-5-3": "BATCH",
        "S-1-5-4": "INTERACTIVE",
        "S-1-5-6": "SERVICE",
        "S-1-5-7": "ANONYMOUS LOGON",
        "S-1-5-9": "Enterprise Domain Controllers",
        "S-1-5-10": "SELF",
        "S-1-5-11": "Authenticated Users",
        "S-1-5-14": "Remote Interactive Logon",
        "S-1-5-15": "This Organization",
        "S-1-5-18": "SYSTEM (LocalSystem)",
        "S-1-5-19": "LOCAL SERVICE",
        "S-1-5-20": "NETWORK SERVICE",
        "S-1-5-32-544": "BUILTIN\\Administrators",
        "S-1-5-32-545": "BUILTIN\\Users",
        "S-1-5-32-546": "BUILTIN\\Guests",
        "S-1-5-32-547": "BUILTIN\\Power Users",
        "S-1-5-32-548": "BUILTIN\\Account Operators",
        "S-1-5-32-549": "BUILTIN\\Server Operators",
        "S-1-5-32-550": "BUILTIN\\Print Operators",
        "S-1-5-32-551": "BUILTIN\\Backup Operators",
        "S-1-5-32-552": "BUILTIN\\Replicator",
        "S-1-5-32-555": "BUILTIN\\Remote Desktop Users",
        "S-1-5-32-562": "BUILTIN\\Distributed COM Users",
        "S-1-5-32-568": "BUILTIN\\IIS_IUSRS",
        "S-1-5-32-573": "BUILTIN\\Event Log Readers",
        "S-1-5-32-578": "BUILTIN\\Hyper-V Administrators",
        "S-1-5-32-580": "BUILTIN\\Remote Management Users",
        "S-1-5-64-10": "NTLM Authentication",
        "S-1-5-64-14": "SChannel Authentication",
        "S-1-5-64-21": "Digest Authentication",
        "S-1-5-80-0": "NT SERVICE\\ALL SERVICES",
        "S-1-5-113": "Local account",
        "S-1-5-114": "Local account and member of Administrators group",
    }
)
"""Well-known SIDs with fixed values (keys in canonical upper-case ``S-`` form)."""

WELL_KNOWN_RIDS: Final[Mapping[int, str]] = MappingProxyType(
    {
        498: "Enterprise Read-only Domain Controllers",
        500: "built-in Administrator",
        501: "Guest",
        502: "krbtgt",
        503: "DefaultAccount",
        512: "Domain Admins",
        513: "Domain Users (under a machine's own SID: None)",
        514: "Domain Guests",
        515: "Domain Computers",
        516: "Domain Controllers",
        517: "Cert Publishers",
        518: "Schema Admins",
        519: "Enterprise Admins",
        520: "Group Policy Creator Owners",
        521: "Read-only Domain Controllers",
        522: "Cloneable Domain Controllers",
        525: "Protected Users",
        526: "Key Admins",
        527: "Enterprise Key Admins",
        553: "RAS and IAS Servers",
        571: "Allowed RODC Password Replication Group",
        572: "Denied RODC Password Replication Group",
    }
)
"""Relative IDs with a fixed meaning under a domain or machine SID ``S-1-5-21-a-b-c-RID``."""

WELL_KNOWN_LOGON_IDS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x3E7: "SYSTEM",
        0x3E4: "NETWORK SERVICE",
        0x3E5: "LOCAL SERVICE",
    }
)
"""Fixed LUIDs of the built-in service logon sessions."""

PROCESS_ACCESS_RIGHTS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x0001: "TERMINATE",
        0x0002: "CREATE_THREAD",
        0x0004: "SET_SESSIONID",
        0x0008: "VM_OPERATION",
        0x0010: "VM_READ",
        0x0020: "VM_WRITE",
        0x0040: "DUP_HANDLE",
        0x0080: "CREATE_PROCESS",
        0x0100: "SET_QUOTA",
        0x0200: "SET_INFORMATION",
        0x0400: "QUERY_INFORMATION",
        0x0800: "SUSPEND_RESUME",
        0x1000: "QUERY_LIMITED_INFORMATION",
        0x2000: "SET_LIMITED_INFORMATION",
        0x10000: "DELETE",
        0x20000: "READ_CONTROL",
        0x40000: "WRITE_DAC",
        0x80000: "WRITE_OWNER",
        0x100000: "SYNCHRONIZE",
        0x1000000: "ACCESS_SYSTEM_SECURITY",
        0x2000000: "MAXIMUM_ALLOWED",
        0x10000000: "GENERIC_ALL",
        0x20000000: "GENERIC_EXECUTE",
        0x40000000: "GENERIC_WRITE",
        0x80000000: "GENERIC_READ",
    }
)
"""Process-specific (``PROCESS_*``, winnt.h), standard and generic access-right bits."""

PROCESS_ALL_ACCESS: Final = 0x1FFFFF
PROCESS_ALL_ACCESS_LEGACY: Final = 0x1F0FFF
"""``PROCESS_ALL_ACCESS`` before Vista / Server 2008."""

_NAMED_BITS: Final = sum(PROCESS_ACCESS_RIGHTS)

_FLAGGED = "flagged by public lsass-access rules"

LSASS_SUSPICIOUS_MASKS: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x40: f"handle duplication; {_FLAGGED}",
        0x1010: "mimikatz sekurlsa",
        0x1038: _FLAGGED,
        0x1410: "procdump / older mimikatz",
        0x1418: _FLAGGED,
        0x1438: _FLAGGED,
        0x143A: _FLAGGED,
        0x1F0FFF: f"full access; {_FLAGGED}",
        0x1F1FFF: f"full access; {_FLAGGED}",
        0x1F2FFF: f"full access; {_FLAGGED}",
        0x1F3FFF: f"full access; {_FLAGGED}",
        0x1FFFFF: f"full access; {_FLAGGED}",
    }
)
"""Sysmon 10 ``GrantedAccess`` / 4656 ``AccessMask`` values on lsass.exe that point at credential
dumping, with the tool each is known for. Any other mask with VM_READ on lsass deserves a look too;
0x1000 and 0x1400 (query only) are usually benign."""

SENSITIVE_PRIVILEGES: Final[frozenset[str]] = frozenset(
    {
        "SeAssignPrimaryTokenPrivilege",
        "SeAuditPrivilege",
        "SeBackupPrivilege",
        "SeCreateTokenPrivilege",
        "SeDebugPrivilege",
        "SeEnableDelegationPrivilege",
        "SeImpersonatePrivilege",
        "SeLoadDriverPrivilege",
        "SeRestorePrivilege",
        "SeSecurityPrivilege",
        "SeSystemEnvironmentPrivilege",
        "SeTakeOwnershipPrivilege",
        "SeTcbPrivilege",
        "SeDelegateSessionUserImpersonatePrivilege",
    }
)
"""4672 ``PrivilegeList`` entries that make a session admin-equivalent."""

EVENT_NAMES: Final[Mapping[tuple[str, int], str]] = MappingProxyType(
    {
        # Security
        ("Security", 1100): "event logging service shut down",
        ("Security", 1102): "audit log cleared",
        ("Security", 4608): "Windows starting up",
        ("Security", 4609): "Windows shutting down",
        ("Security", 4624): "logon",
        ("Security", 4625): "failed logon",
        ("Security", 4634): "logoff",
        ("Security", 4647): "user-initiated logoff",
        ("Security", 4648): "logon with explicit credentials",
        ("Security", 4656): "handle to object requested",
        ("Security", 4663): "object accessed",
        ("Security", 4672): "special privileges assigned to new logon",
        ("Security", 4688): "process created",
        ("Security", 4689): "process exited",
        ("Security", 4697): "service installed",
        ("Security", 4698): "scheduled task created",
        ("Security", 4702): "scheduled task updated",
        ("Security", 4720): "user account created",
        ("Security", 4722): "user account enabled",
        ("Security", 4724): "password reset attempted",
        ("Security", 4726): "user account deleted",
        ("Security", 4728): "member added to global security group",
        ("Security", 4732): "member added to local security group",
        ("Security", 4738): "user account changed",
        ("Security", 4756): "member added to universal security group",
        ("Security", 4768): "Kerberos TGT requested",
        ("Security", 4769): "Kerberos service ticket requested",
        ("Security", 4771): "Kerberos pre-authentication failed",
        ("Security", 4776): "NTLM credential validation",
        ("Security", 4778): "RDP session reconnected",
        ("Security", 4779): "RDP session disconnected",
        ("Security", 5140): "network share accessed",
        ("Security", 5145): "network share object checked",
        ("Security", 5152): "packet dropped by the firewall (WFP)",
        ("Security", 5153): "packet vetoed by a filter (WFP)",
        ("Security", 5154): "listen permitted (WFP)",
        ("Security", 5155): "listen blocked (WFP)",
        ("Security", 5156): "connection permitted (WFP)",
        ("Security", 5157): "connection blocked (WFP)",
        ("Security", 5158): "bind to a local port permitted (WFP)",
        ("Security", 5159): "bind to a local port blocked (WFP)",
        # System
        ("System", 104): "event log cleared",
        ("System", 6005): "event log service started (boot)",
        ("System", 6006): "event log service stopped (shutdown)",
        ("System", 6009): "OS version at boot",
        ("System", 7034): "service terminated unexpectedly",
        ("System", 7035): "service control sent",
        ("System", 7036): "service state changed",
        ("System", 7040): "service start type changed",
        ("System", 7045): "service installed",
        # Sysmon
        ("Sysmon", 1): "process create",
        ("Sysmon", 2): "file creation time changed",
        ("Sysmon", 3): "network connection",
        ("Sysmon", 5): "process terminated",
        ("Sysmon", 6): "driver loaded",
        ("Sysmon", 7): "image loaded",
        ("Sysmon", 8): "CreateRemoteThread",
        ("Sysmon", 10): "process access",
        ("Sysmon", 11): "file create",
        ("Sysmon", 12): "registry key/value created or deleted",
        ("Sysmon", 13): "registry value set",
        ("Sysmon", 14): "registry key/value renamed",
        ("Sysmon", 22): "DNS query",
        # Windows PowerShell (the classic log)
        ("Windows PowerShell", 400): "PowerShell engine started",
        ("Windows PowerShell", 403): "PowerShell engine stopped",
        ("Windows PowerShell", 600): "PowerShell provider started",
        ("Windows PowerShell", 800): "PowerShell pipeline executed",
        # PowerShell
        ("PowerShell", 4103): "module logging (pipeline execution)",
        ("PowerShell", 4104): "script block logged",
        # Terminal Services
        ("TerminalServices-LocalSessionManager", 21): "RDP session logon succeeded",
        ("TerminalServices-LocalSessionManager", 22): "RDP shell start",
        ("TerminalServices-LocalSessionManager", 23): "RDP session logoff",
        ("TerminalServices-LocalSessionManager", 24): "RDP session disconnected",
        ("TerminalServices-LocalSessionManager", 25): "RDP session reconnected",
        ("TerminalServices-RemoteConnectionManager", 1149): "RDP network authentication succeeded",
    }
)
"""Short descriptions of the events that matter most, keyed by (channel key, event ID)."""

_CHANNEL_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "security": "Security",
        "system": "System",
        "sysmon": "Sysmon",
        "powershell": "PowerShell",
        "powershellcore": "PowerShell",  # PowerShell 7: "PowerShellCore/Operational"
        "windows powershell": "Windows PowerShell",
        "terminalservices-localsessionmanager": "TerminalServices-LocalSessionManager",
        "terminalservices-remoteconnectionmanager": "TerminalServices-RemoteConnectionManager",
    }
)

# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------

_U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
_MAX_TEXT: Final = 4096  # longer values are never a number, SID or code: do not even scan them
_DEC_RE: Final = re.compile(r"[0-9]{1,20}", re.ASCII)
_HEX_DIGITS_RE: Final = re.compile(r"[0-9a-fA-F]{1,16}", re.ASCII)
_PERCENT_RE: Final = re.compile(r"%%[0-9]{1,6}", re.ASCII)
_PERCENT_LIST_RE: Final = re.compile(r"(?:%%[0-9]{1,6}[\s,;]*)+", re.ASCII)
_SID_RE: Final = re.compile(r"S-1(?:-[0-9]{1,10}){1,15}", re.ASCII)
_DOMAIN_SID_RE: Final = re.compile(r"S-1-5-21-[0-9]{1,10}-[0-9]{1,10}-[0-9]{1,10}-([0-9]{1,10})", re.ASCII)


def _text(value: object) -> str | None:
    """The stripped text of a string value, or None for non-strings and oversized text."""
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        return None
    return value.strip()


def _hex_digits(digits: str) -> int | None:
    digits = digits.lstrip("0") or "0"
    if not _HEX_DIGITS_RE.fullmatch(digits):
        return None
    return int(digits, 16)


def _in_u64(number: int) -> int | None:
    return number if 0 <= number <= _U64_MAX else None


def parse_int(value: object) -> int | None:
    """An unsigned 64-bit integer from an int, ``"0x3E7"``/``"0x3e7"`` (hex, prefix required) or
    ``"999"`` (decimal); surrounding whitespace is ignored.

    Booleans, floats, negative or over-64-bit numbers, empty strings, ``"-"`` and anything else
    give ``None``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _in_u64(value)
    text = _text(value)
    if not text:
        return None
    if text[:2] in ("0x", "0X"):
        return _hex_digits(text[2:]) if len(text) > 2 else None
    if _DEC_RE.fullmatch(text.lstrip("0") or "0"):
        return _in_u64(int(text))
    return None


def parse_hex(value: object) -> int | None:
    """Like :func:`parse_int`, but text is always read as hexadecimal, with or without ``0x``.

    For fields that are hex by definition (4688 ``ProcessId``/``NewProcessId``, access masks):
    domain.md links PIDs with ``int(ProcessId, 16)``, which accepts both forms, so ``"1410"`` is
    0x1410 here. Integers are taken as they are.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _in_u64(value)
    text = _text(value)
    if not text:
        return None
    if text[:2] in ("0x", "0X"):
        text = text[2:]
        if not text:
            return None
    return _hex_digits(text)


def _parse_code(value: object) -> int | None:
    """Status codes: 0x-hex or decimal, and bare hex when it has a letter (``"C000006A"``)."""
    number = parse_int(value)
    if number is None and isinstance(value, str) and any(c in "abcdefABCDEF" for c in value):
        number = parse_hex(value)
    return number


def channel_key(channel: object) -> str | None:
    """The :data:`EVENT_NAMES` channel key for a channel name, in any case and either short
    (``"sysmon"``) or full (``"Microsoft-Windows-Sysmon/Operational"``)."""
    text = _text(channel)
    if not text:
        return None
    key = text.lower()
    if key.endswith("/operational"):
        key = key[: -len("/operational")]
    key = key.removeprefix("microsoft-windows-")
    return _CHANNEL_KEYS.get(key)


def event_name(channel: str | None, event_id: int | None) -> str | None:
    """Short description of a well-known event, e.g. ``("Security", 4625)`` → failed logon.

    The channel is required: event IDs are only unique within a provider.
    """
    key = channel_key(channel)
    number = parse_int(event_id)
    if key is None or number is None:
        return None
    return EVENT_NAMES.get((key, number))


# --------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------


def logon_type(value: object) -> str | None:
    """``3`` → ``"Network"``."""
    number = parse_int(value)
    return None if number is None else LOGON_TYPES.get(number)


def ntstatus(value: object) -> str | None:
    """``0xC000006A`` (int or text, any case) → ``"user name correct, password wrong"``."""
    number = _parse_code(value)
    return None if number is None else NTSTATUS.get(number)


def kerberos_status(value: object) -> str | None:
    """``0x18`` → pre-authentication failed (bad password)."""
    number = _parse_code(value)
    return None if number is None else KERBEROS_STATUS.get(number)


def kerberos_encryption(value: object, *, service_ticket: bool = False) -> str | None:
    """``0x17`` → RC4-HMAC; on a service ticket (4769) that is the Kerberoasting signal, while an RC4
    TGT (4768) only says the account or client still allows RC4."""
    number = _parse_code(value)
    text = None if number is None else KERBEROS_ENCRYPTION.get(number)
    if text is not None and number == 0x17 and service_ticket:
        text += "; an RC4 service ticket: Kerberoasting signal"
    return text


def percent_string(value: object) -> str | None:
    """One ``%%NNNN`` message string, e.g. ``"%%2313"`` → unknown user name or bad password."""
    text = _text(value)
    if not text or not _PERCENT_RE.fullmatch(text):
        return None
    return PERCENT_STRINGS.get(text)


def _percent_list(value: object) -> str | None:
    """Several ``%%NNNN`` separated by whitespace or commas (4663 ``AccessList``)."""
    text = _text(value)
    if not text or not _PERCENT_LIST_RE.fullmatch(text):
        return None
    codes = _PERCENT_RE.findall(text)
    if not any(code in PERCENT_STRINGS for code in codes):
        return None
    return ", ".join(PERCENT_STRINGS.get(code, code) for code in codes)


def token_elevation(value: object) -> str | None:
    """4688 ``TokenElevationType``: ``"%%1937"`` → elevated."""
    text = _text(value)
    return None if text is None else _TOKEN_ELEVATION_STRINGS.get(text)


def mandatory_label(value: object) -> str | None:
    """``"S-1-16-12288"`` → ``"High Mandatory Level"``."""
    text = _text(value)
    return None if not text else MANDATORY_LABELS.get(text.upper())


def sid(value: object) -> str | None:
    """Well-known SIDs, integrity labels, ``NT SERVICE`` SIDs and fixed RIDs under a domain or
    machine SID (``S-1-5-21-…-500`` → ``"built-in Administrator (RID 500)"``)."""
    text = _text(value)
    if not text:
        return None
    canonical = text.upper()
    if not _SID_RE.fullmatch(canonical):
        return None
    known = WELL_KNOWN_SIDS.get(canonical) or MANDATORY_LABELS.get(canonical)
    if known is not None:
        return known
    domain = _DOMAIN_SID_RE.fullmatch(canonical)
    if domain is not None:
        rid = int(domain.group(1))
        name = WELL_KNOWN_RIDS.get(rid)
        return None if name is None else f"{name} (RID {rid})"
    if canonical.startswith("S-1-5-80-"):
        return "NT SERVICE\\… (per-service SID)"
    return None


def logon_id(value: object) -> str | None:
    """Well-known LogonIds: ``"0x3e7"``, ``"0x3E7"``, ``"999"`` or ``999`` → ``"SYSTEM"``."""
    number = parse_int(value)
    return None if number is None else WELL_KNOWN_LOGON_IDS.get(number)


def is_lsass(image: object) -> bool:
    """Whether a process image (full path or bare name) is lsass.exe."""
    if not isinstance(image, str) or len(image) > _MAX_TEXT:
        return False
    return image.strip().replace("/", "\\").rsplit("\\", 1)[-1].lower() == "lsass.exe"


def access_mask(value: object, *, target: object = None) -> str | None:
    """Process access mask → right names joined by ``" | "`` in bit order, plus, when the process
    opened (``target``, an image path) is lsass, the note for masks flagged on lsass, e.g.
    ``"0x1410"`` on lsass →
    ``"VM_READ | QUERY_INFORMATION | QUERY_LIMITED_INFORMATION (0x1410: procdump / older mimikatz)"``.
    The same mask on any other process is routine, and gets no note.

    Text is read as hex (masks are always hex). Bits with no name show as hex.
    """
    mask = parse_hex(value)
    if mask is None or mask > 0xFFFFFFFF:
        return None
    if mask == PROCESS_ALL_ACCESS:
        names = "PROCESS_ALL_ACCESS"
    elif mask == PROCESS_ALL_ACCESS_LEGACY:
        names = "PROCESS_ALL_ACCESS, pre-Vista value"
    elif mask == 0:
        names = "no access rights"
    else:
        parts = [name for bit, name in PROCESS_ACCESS_RIGHTS.items() if mask & bit]
        unknown = mask & ~_NAMED_BITS
        if unknown:
            parts.append(f"0x{unknown:X}")
        names = " | ".join(parts)
    note = LSASS_SUSPICIOUS_MASKS.get(mask) if is_lsass(target) else None
    return names if note is None else f"{names} (0x{mask:X}: {note})"


def _privilege_names(value: object) -> list[str] | None:
    if isinstance(value, str):
        text = _text(value)
        return None if text is None else text.split()
    if isinstance(value, (list, tuple)):
        names: list[str] = []
        for item in value:
            if isinstance(item, str) and len(item) <= _MAX_TEXT:
                names.extend(item.split())
        return names
    return None


_SENSITIVE_BY_LOWER: Final[Mapping[str, str]] = MappingProxyType(
    {name.lower(): name for name in SENSITIVE_PRIVILEGES}
)


def privileges(value: object) -> str | None:
    """4672 ``PrivilegeList`` (whitespace-separated text, or a list as winlogbeat writes it) →
    ``"sensitive: SeDebugPrivilege, SeTcbPrivilege"``; ``None`` when none is sensitive."""
    names = _privilege_names(value)
    if not names:
        return None
    found = _unique(_SENSITIVE_BY_LOWER.get(name.lower()) for name in names)
    return f"sensitive: {', '.join(found)}" if found else None


def _unique(items: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if item is not None:
            seen.setdefault(item, None)
    return list(seen)


# --------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------

_KERBEROS_EVENTS: Final = frozenset({4768, 4769, 4771})
_OBJECT_ACCESS_EVENTS: Final = frozenset({4656, 4663})
_SID_FIELDS: Final = frozenset({"userid", "sid"})


def decode_field(
    name: str,
    value: object,
    *,
    event_id: int | None = None,
    channel: str | None = None,
    object_type: str | None = None,
    target: str | None = None,
) -> str | None:
    """Decode one event field by its name, or return ``None``.

    ``name`` is matched case-insensitively; a dotted ECS path uses its last part
    (``winlog.event_data.LogonType``). ``event_id`` picks the Kerberos table for ``Status`` on
    4768/4769/4771 (NTSTATUS otherwise, including 4776) and enables ``AccessMask`` decoding on
    4656/4663. ``AccessMask`` is decoded with process rights on those events unless
    ``object_type`` is given and is not ``"Process"`` (a file's 0x1 is ReadData, not TERMINATE).
    ``target`` is the process the access was to (Sysmon 10 ``TargetImage``, 4656/4663
    ``ObjectName``): a mask's lsass note is given only when it is lsass.
    Any other value made only of ``%%NNNN`` codes is decoded from :data:`PERCENT_STRINGS`.
    ``channel`` is accepted for symmetry with :func:`event_name`; no decoder needs it yet.
    """
    del channel  # reserved
    if not isinstance(name, str) or len(name) > 256:
        return None
    field = name.rsplit(".", 1)[-1].strip().lower()
    eid = parse_int(event_id)

    if field == "logontype":
        return logon_type(value)
    if field in ("status", "substatus"):
        if eid in _KERBEROS_EVENTS:
            if parse_int(value) == 0 and eid != 4771:
                return "success"
            return kerberos_status(value)
        if eid == 4776 and parse_int(value) == 0:
            return "success"
        return ntstatus(value)
    if field == "failurereason":
        return percent_string(value)
    if field == "tokenelevationtype":
        return token_elevation(value)
    if field == "mandatorylabel":
        return mandatory_label(value)
    if field == "integritylevel":
        return None  # Sysmon writes the level by name already
    if field == "ticketencryptiontype":
        return kerberos_encryption(value, service_ticket=eid == 4769)
    if field == "privilegelist":
        return privileges(value)
    if field.endswith("logonid"):
        return logon_id(value)
    if field.endswith("sid") or field in _SID_FIELDS:
        return sid(value)
    if field == "grantedaccess":
        return access_mask(value, target=target)
    if field == "accessmask":
        is_process = object_type is None or (
            isinstance(object_type, str) and object_type.strip().lower() == "process"
        )
        return access_mask(value, target=target) if eid in _OBJECT_ACCESS_EVENTS and is_process else None
    return _percent_list(value)


# --------------------------------------------------------------------------------------------
# PowerShell -EncodedCommand
# --------------------------------------------------------------------------------------------

# powershell.exe takes any prefix of -EncodedCommand ("-e", "-en", "-enc", …) and "-ec"; a switch
# may start with "/" or a Unicode dash, as attackers write it to dodge naive matching.
_ENCODED_SWITCH_RE: Final = re.compile(
    r"(?<![\w-])([-/\u2013\u2014\u2015](?:ec|e(?:n(?:c(?:o(?:d(?:e(?:d(?:c(?:o(?:m(?:m(?:a(?:n(?:d)?)?)?)?)?)?)?)?)?)?)?)?)?))"
    r"(?:\s+|:)[\"']?([A-Za-z0-9+/=]+)",
    re.IGNORECASE,
)
_POWERSHELL_RE: Final = re.compile(r"powershell|pwsh", re.IGNORECASE)
_MIN_ENCODED: Final = 8  # shorter arguments are never a command worth decoding
_MAX_ENCODED: Final = 16 * 1024 * 1024


class EncodedCommand(NamedTuple):
    """A base64 ``-EncodedCommand`` argument found in a command line, and what it decodes to."""

    switch: str  # as written: "-enc", "-EncodedCommand", "/e", …
    encoded: str  # the base64 argument, as written
    decoded: str | None  # the UTF-16LE command, or None when it does not decode
    problem: str | None = None  # why it does not decode, or what was repaired ("padding added")


_BASE64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Each base64 letter is 6 bits, i.e. two octal digits: the whole argument becomes one octal number.
_BASE64_TO_OCTAL: Final = str.maketrans({ch: f"{n:02o}" for n, ch in enumerate(_BASE64_ALPHABET)})
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/]*")


def _decode_base64(text: str) -> tuple[bytes | None, str | None]:
    """Lenient base64 (the standard library's ``base64`` without importing it): missing padding is
    repaired; anything else is refused with the reason."""
    body = text.rstrip("=")
    if not _BASE64_RE.fullmatch(body):
        return None, "not valid base64 (padding inside it)"
    if len(body) % 4 == 1:
        return None, f"not base64 ({len(body):,} characters cannot be a whole number of bytes)"
    size = len(body) * 6 // 8
    extra_bits = len(body) * 6 - size * 8
    number = int(body.translate(_BASE64_TO_OCTAL), 8) >> extra_bits if body else 0
    padded = len(body) + (-len(body) % 4)
    return number.to_bytes(size, "big"), "padding repaired" if len(text) != padded else None


def _looks_like_text(text: str) -> bool:
    """A PowerShell command in UTF-16LE: mostly Latin code units, few controls or broken pairs.
    8-bit text read as UTF-16LE gives CJK-looking pairs instead."""
    if not text:
        return False
    latin = sum(1 for ch in text if ord(ch) < 0x250)
    odd = sum(1 for ch in text if (ord(ch) < 0x20 and ch not in "\t\r\n") or ch == "\ufffd")
    return latin * 2 >= len(text) and odd * 10 <= len(text)


def powershell_encoded_command(value: object) -> EncodedCommand | None:
    """The first ``-EncodedCommand`` (``-enc``, ``-e``, ``-ec``, any prefix) argument of a command line
    or script, decoded from base64 UTF-16LE as PowerShell does, or ``None`` when there is none.

    Bad input never raises: a bad argument gives ``decoded=None`` with the reason in ``problem``
    (not base64, not UTF-16LE text); missing padding is repaired and said so. The bare ``-e`` is
    only read where the text names PowerShell (``powershell``, ``pwsh``), as other tools use it too.
    """
    if not isinstance(value, str) or len(value) > _MAX_ENCODED:
        return None
    for match in _ENCODED_SWITCH_RE.finditer(value):
        switch, encoded = match.group(1), match.group(2)
        if len(encoded.rstrip("=")) < _MIN_ENCODED:
            continue
        if switch[1:].lower() == "e" and not _POWERSHELL_RE.search(value, 0, match.start()):
            continue
        data, problem = _decode_base64(encoded)
        if data is None:
            return EncodedCommand(switch, encoded, None, problem)
        notes = [problem] if problem else []
        if len(data) % 2:
            data = data[:-1]
            notes.append("odd byte dropped")
        decoded = data.decode("utf-16-le", "replace")
        if not _looks_like_text(decoded):
            return EncodedCommand(switch, encoded, None, "base64, but not UTF-16LE text (PowerShell could not run it)")
        return EncodedCommand(switch, encoded, decoded, ", ".join(notes) or None)
    return None
