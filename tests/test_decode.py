"""Decoding raw Windows field values into analyst text (engine/decode.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import decode
from engine.decode import (
    EVENT_NAMES,
    LOGON_TYPES,
    LSASS_SUSPICIOUS_MASKS,
    NTSTATUS,
    PERCENT_STRINGS,
    PROCESS_ACCESS_RIGHTS,
    SENSITIVE_PRIVILEGES,
    access_mask,
    channel_key,
    decode_field,
    event_name,
    kerberos_encryption,
    kerberos_status,
    logon_id,
    logon_type,
    mandatory_label,
    ntstatus,
    parse_hex,
    parse_int,
    percent_string,
    privileges,
    sid,
    token_elevation,
)

# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (999, 999),
        ("0x3E7", 0x3E7),
        ("0x3e7", 0x3E7),
        ("0X3e7", 0x3E7),
        ("999", 999),
        (" 5 ", 5),
        ("\t0x10\n", 0x10),
        ("0x0", 0),
        ("0x00000000000003e7", 0x3E7),
        ("007", 7),
        ("0xFFFFFFFFFFFFFFFF", 0xFFFF_FFFF_FFFF_FFFF),
        ("18446744073709551615", 0xFFFF_FFFF_FFFF_FFFF),
    ],
)
def test_parse_int_reads_decimal_and_prefixed_hex(raw: object, expected: int) -> None:
    assert parse_int(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        True,
        False,
        None,
        1.0,
        "",
        "   ",
        "-",
        "0x",
        "3e7",  # hex needs the 0x prefix
        "abc",
        "-1",
        -1,
        "+5",
        "1_000",  # int() would accept this
        "١٢٣",  # non-ASCII digits, which int() would accept
        "0x 3e7",
        "5 5",
        "0x10000000000000000",  # beyond 64 bits
        "18446744073709551616",
        2**64,
        b"999",
        ["999"],
        {"a": 1},
        "9" * 5000,
    ],
)
def test_parse_int_rejects_everything_else_with_none(raw: object) -> None:
    assert parse_int(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1410", 0x1410),
        ("0x1410", 0x1410),
        ("0x143a", 0x143A),
        ("143A", 0x143A),
        (" 1f0fff ", 0x1F0FFF),
        (0x1410, 0x1410),
    ],
)
def test_parse_hex_reads_text_as_hex_with_or_without_prefix(raw: object, expected: int) -> None:
    assert parse_hex(raw) == expected


@pytest.mark.parametrize("raw", [True, None, "", "0x", "xyz", "-", "0x-1", "1 0", 1.5, -4])
def test_parse_hex_rejects_garbage_with_none(raw: object) -> None:
    assert parse_hex(raw) is None


# --------------------------------------------------------------------------------------------
# LogonType
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, "System"),
        ("2", "Interactive"),
        ("3", "Network"),
        (4, "Batch"),
        (5, "Service"),
        (7, "Unlock"),
        (8, "NetworkCleartext"),
        ("9", "NewCredentials"),
        ("10", "RemoteInteractive"),
        (11, "CachedInteractive"),
        (12, "CachedRemoteInteractive"),
        (13, "CachedUnlock"),
    ],
)
def test_logon_type_reads_as_its_windows_name(raw: object, expected: str) -> None:
    assert logon_type(raw) == expected


@pytest.mark.parametrize("raw", [1, 6, 14, "99", "Network", "-", None, True])
def test_logon_type_unknown_or_unused_reads_as_none(raw: object) -> None:
    assert logon_type(raw) is None


def test_logon_types_cover_every_documented_value() -> None:
    assert set(LOGON_TYPES) == {0, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13}


# --------------------------------------------------------------------------------------------
# NTSTATUS and Kerberos
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0xC000006A", "user name correct, password wrong"),
        ("0xc000006a", "user name correct, password wrong"),
        ("0XC000006a", "user name correct, password wrong"),
        (0xC000006A, "user name correct, password wrong"),
        ("3221225578", "user name correct, password wrong"),
        ("C000006A", "user name correct, password wrong"),
        ("0xc0000064", "user name does not exist"),
        ("0xC0000234", "account locked out"),
        ("0xc000005e", "no logon server available"),
        ("0xC0000413", "authentication firewall: not allowed on this machine"),
    ],
)
def test_ntstatus_reads_as_its_meaning_in_any_case(raw: object, expected: str) -> None:
    assert ntstatus(raw) == expected


def test_status_0xc000006a_reads_as_wrong_password() -> None:
    assert decode_field("Status", "0xc000006a", event_id=4625) == "user name correct, password wrong"


def test_ntstatus_table_holds_every_code_of_the_domain_reference() -> None:
    documented = {
        0xC0000064, 0xC000006A, 0xC000006D, 0xC000006E, 0xC000006F, 0xC0000070, 0xC0000071,
        0xC0000072, 0xC00000DC, 0xC0000133, 0xC000015B, 0xC000018C, 0xC0000192, 0xC0000193,
        0xC0000224, 0xC0000234, 0xC00002EE, 0xC0000413, 0xC000005E,
    }  # fmt: skip
    assert set(NTSTATUS) == documented


@pytest.mark.parametrize("raw", ["0xC0000001", "0x0", 0, "-", "", "%%2313", None, "zzz"])
def test_ntstatus_unknown_code_reads_as_none(raw: object) -> None:
    assert ntstatus(raw) is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("0x6", "principal unknown"),
        ("0x12", "disabled or locked"),
        ("0x17", "password expired"),
        ("0x18", "pre-authentication failed"),
        (0x18, "bad password"),
        ("0x25", "clock skew"),
    ],
)
def test_kerberos_status_reads_as_its_meaning(raw: object, fragment: str) -> None:
    result = kerberos_status(raw)
    assert result is not None and fragment in result


def test_kerberos_status_unknown_code_reads_as_none() -> None:
    assert kerberos_status("0x7f") is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("0x17", "RC4-HMAC"), ("0x12", "AES256"), ("0x11", "AES128"), (23, "RC4")],
)
def test_ticket_encryption_type_reads_as_cipher(raw: object, fragment: str) -> None:
    result = kerberos_encryption(raw)
    assert result is not None and fragment in result


def test_rc4_is_a_kerberoasting_signal_on_a_service_ticket_only() -> None:
    assert "Kerberoasting" in (decode_field("TicketEncryptionType", "0x17", event_id=4769) or "")
    assert "Kerberoasting" not in (decode_field("TicketEncryptionType", "0x17", event_id=4768) or "x")
    assert "Kerberoasting" not in (decode_field("TicketEncryptionType", "0x12", event_id=4769) or "x")


def test_status_on_kerberos_events_uses_the_kerberos_table() -> None:
    for event_id in (4768, 4769, 4771):
        result = decode_field("Status", "0x18", event_id=event_id)
        assert result is not None and "pre-authentication failed" in result


def test_status_on_4776_uses_ntstatus_not_kerberos() -> None:
    assert decode_field("Status", "0xC0000064", event_id=4776) == "user name does not exist"
    assert decode_field("Status", "0x18", event_id=4776) is None


def test_status_zero_on_ticket_and_ntlm_events_reads_as_success() -> None:
    assert decode_field("Status", "0x0", event_id=4768) == "success"
    assert decode_field("Status", "0x0", event_id=4776) == "success"
    assert decode_field("SubStatus", "0x0", event_id=4625) is None


def test_substatus_of_4625_reads_as_ntstatus() -> None:
    assert decode_field("SubStatus", "0xC0000072", event_id=4625) == "account disabled"


# --------------------------------------------------------------------------------------------
# %%NNNN message strings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%%2304", "error during logon"),
        ("%%2307", "account locked out"),
        ("%%2313", "unknown user name or bad password"),
        (" %%2310 ", "account disabled"),
        ("%%1833", "Impersonation"),
        ("%%1842", "Yes"),
        ("%%1843", "No"),
        ("%%4484", "Read from process memory"),
        ("%%4416", "ReadData (or ListDirectory)"),
    ],
)
def test_percent_string_reads_as_message_text(raw: str, expected: str) -> None:
    assert percent_string(raw) == expected


def test_failure_reasons_2304_to_2313_are_all_known() -> None:
    assert all(f"%%{n}" in PERCENT_STRINGS for n in range(2304, 2314))


@pytest.mark.parametrize("raw", ["%%9999", "%%", "2313", "%2313", "%%23a", "%%2313 %%2304", 2313, None])
def test_percent_string_unknown_or_malformed_reads_as_none(raw: object) -> None:
    assert percent_string(raw) is None


def test_failure_reason_field_reads_as_message_text() -> None:
    assert decode_field("FailureReason", "%%2313", event_id=4625) == "unknown user name or bad password"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("%%1936", "full token"), ("%%1937", "elevated"), ("%%1938", "limited")],
)
def test_token_elevation_type_reads_as_elevation(raw: str, fragment: str) -> None:
    result = token_elevation(raw)
    assert result is not None and fragment in result


def test_token_elevation_type_rejects_other_percent_strings() -> None:
    assert token_elevation("%%2313") is None
    assert token_elevation("TokenElevationTypeFull (2)") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%%4484\r\n\t\t\t\t", "Read from process memory"),
        ("%%4484, ", "Read from process memory"),
        ("%%1538\r\n\t\t\t\t%%4484", "READ_CONTROL, Read from process memory"),
        ("%%4484 %%9999", "Read from process memory, %%9999"),
    ],
)
def test_access_list_of_percent_strings_reads_as_each_right(raw: str, expected: str) -> None:
    assert decode_field("AccessList", raw, event_id=4663) == expected


def test_any_field_holding_only_percent_strings_is_decoded() -> None:
    assert decode_field("ElevatedToken", "%%1842", event_id=4624) == "Yes"
    assert decode_field("VirtualAccount", "%%1843", event_id=4624) == "No"
    assert decode_field("SomeField", "%%9999 %%9998") is None


# --------------------------------------------------------------------------------------------
# SIDs, integrity labels, LogonIds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("S-1-16-4096", "Low Mandatory Level"),
        ("S-1-16-8192", "Medium Mandatory Level"),
        ("S-1-16-8448", "Medium Plus Mandatory Level"),
        ("S-1-16-12288", "High Mandatory Level"),
        ("s-1-16-16384", "System Mandatory Level"),
    ],
)
def test_mandatory_label_reads_as_integrity_level(raw: str, expected: str) -> None:
    assert mandatory_label(raw) == expected
    assert decode_field("MandatoryLabel", raw, event_id=4688) == expected


def test_sysmon_integrity_level_needs_no_decoding() -> None:
    assert decode_field("IntegrityLevel", "High", event_id=1) is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("S-1-5-18", "SYSTEM"),
        ("s-1-5-18", "SYSTEM"),
        ("S-1-5-19", "LOCAL SERVICE"),
        ("S-1-5-20", "NETWORK SERVICE"),
        ("S-1-0-0", "NULL SID"),
        ("S-1-5-7", "ANONYMOUS LOGON"),
        ("S-1-5-32-544", "Administrators"),
        ("S-1-5-32-545", "Users"),
        ("S-1-5-32-555", "Remote Desktop Users"),
        ("S-1-5-21-1089590679-3038349081-645448463-500", "Administrator (RID 500)"),
        ("S-1-5-21-1-2-3-501", "Guest"),
        ("S-1-5-21-1-2-3-502", "krbtgt"),
        ("S-1-5-21-1-2-3-512", "Domain Admins"),
        ("S-1-5-21-1-2-3-519", "Enterprise Admins"),
        ("S-1-16-12288", "High Mandatory Level"),
        ("S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464", "NT SERVICE"),
    ],
)
def test_sid_reads_as_well_known_principal(raw: str, fragment: str) -> None:
    result = sid(raw)
    assert result is not None and fragment in result


@pytest.mark.parametrize(
    "raw",
    [
        "S-1-5-21-1089590679-3038349081-645448463-1104",  # ordinary account
        "S-1-5-21-1-2-500",  # too few sub-authorities for a domain SID
        "S-1-5-32-999",
        "-",
        "",
        "SYSTEM",
        "S-1-5-18-",
        "S-1-5-18 x",
        None,
        18,
    ],
)
def test_sid_unknown_or_malformed_reads_as_none(raw: object) -> None:
    assert sid(raw) is None


@pytest.mark.parametrize(
    "field", ["SubjectUserSid", "TargetUserSid", "TargetSid", "MemberSid", "UserID", "winlog.user.sid"]
)
def test_sid_fields_are_decoded_by_name(field: str) -> None:
    assert decode_field(field, "S-1-5-18") == "SYSTEM (LocalSystem)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0x3e7", "SYSTEM"),
        ("0x3E7", "SYSTEM"),
        ("999", "SYSTEM"),
        (999, "SYSTEM"),
        ("0x3e4", "NETWORK SERVICE"),
        ("996", "NETWORK SERVICE"),
        ("0x3E5", "LOCAL SERVICE"),
    ],
)
def test_logon_id_reads_as_builtin_session_in_hex_or_decimal(raw: object, expected: str) -> None:
    assert logon_id(raw) == expected


@pytest.mark.parametrize("raw", ["0x0", "0x6007a", "3e7", "-", None])
def test_logon_id_ordinary_or_malformed_reads_as_none(raw: object) -> None:
    assert logon_id(raw) is None


@pytest.mark.parametrize("field", ["SubjectLogonId", "TargetLogonId", "TargetLinkedLogonId", "LogonId"])
def test_logon_id_fields_are_decoded_by_name(field: str) -> None:
    assert decode_field(field, "0x3E7") == "SYSTEM"


def test_logon_guid_is_not_mistaken_for_a_logon_id() -> None:
    assert decode_field("LogonGuid", "999") is None


# --------------------------------------------------------------------------------------------
# Access masks
# --------------------------------------------------------------------------------------------


LSASS = "C:\\Windows\\system32\\lsass.exe"


def test_granted_access_0x1410_on_lsass_reads_as_procdump_mask() -> None:
    assert access_mask("0x1410", target=LSASS) == (
        "VM_READ | QUERY_INFORMATION | QUERY_LIMITED_INFORMATION (0x1410: procdump / older mimikatz)"
    )


def test_granted_access_0x1010_on_lsass_reads_as_mimikatz_sekurlsa() -> None:
    assert access_mask("0x1010", target="lsass.exe") == "VM_READ | QUERY_LIMITED_INFORMATION (0x1010: mimikatz sekurlsa)"


@pytest.mark.parametrize("raw", ["0x1410", "0X1410", "0x143a", "0x143A", "1410", 0x1410])
def test_granted_access_is_read_in_any_case_and_form(raw: object) -> None:
    result = access_mask(raw)
    assert result is not None and "VM_READ" in result and "QUERY_INFORMATION" in result


def test_granted_access_0x1fffff_reads_as_process_all_access() -> None:
    result = access_mask("0x1FFFFF", target=LSASS)
    assert result is not None and result.startswith("PROCESS_ALL_ACCESS (0x1FFFFF: full access")


def test_granted_access_0x1f0fff_reads_as_legacy_process_all_access() -> None:
    result = access_mask("0x1F0FFF", target=LSASS)
    assert result is not None and result.startswith("PROCESS_ALL_ACCESS, pre-Vista value (0x1F0FFF:")


def test_granted_access_0x1000_is_query_only_with_no_lsass_note() -> None:
    assert access_mask("0x1000") == "QUERY_LIMITED_INFORMATION"
    assert access_mask("0x1400") == "QUERY_INFORMATION | QUERY_LIMITED_INFORMATION"


def test_every_flagged_lsass_mask_carries_its_note_on_lsass_and_none_on_another_process() -> None:
    for mask, note in LSASS_SUSPICIOUS_MASKS.items():
        result = access_mask(hex(mask), target=LSASS)
        assert result is not None and result.endswith(f"(0x{mask:X}: {note})")
        for other in ("C:\\Windows\\System32\\smss.exe", "C:\\Windows\\System32\\csrss.exe", None, "",
                      "C:\\Temp\\notlsass.exe"):
            plain = access_mask(hex(mask), target=other)
            assert plain is not None and "(0x" not in plain and "mimikatz" not in plain, (mask, other)


def test_flagged_lsass_masks_are_the_ones_of_the_domain_reference() -> None:
    assert {0x1010, 0x1410, 0x1038, 0x1438, 0x143A, 0x1418, 0x40, 0x1F0FFF, 0x1F3FFF, 0x1FFFFF} <= set(
        LSASS_SUSPICIOUS_MASKS
    )
    assert not {0x1000, 0x1400} & set(LSASS_SUSPICIOUS_MASKS)


@pytest.mark.parametrize(
    ("bit", "name"),
    [
        (0x0001, "TERMINATE"),
        (0x0002, "CREATE_THREAD"),
        (0x0004, "SET_SESSIONID"),
        (0x0008, "VM_OPERATION"),
        (0x0010, "VM_READ"),
        (0x0020, "VM_WRITE"),
        (0x0040, "DUP_HANDLE"),
        (0x0080, "CREATE_PROCESS"),
        (0x0100, "SET_QUOTA"),
        (0x0200, "SET_INFORMATION"),
        (0x0400, "QUERY_INFORMATION"),
        (0x0800, "SUSPEND_RESUME"),
        (0x1000, "QUERY_LIMITED_INFORMATION"),
        (0x2000, "SET_LIMITED_INFORMATION"),
        (0x10000, "DELETE"),
        (0x20000, "READ_CONTROL"),
        (0x40000, "WRITE_DAC"),
        (0x80000, "WRITE_OWNER"),
        (0x100000, "SYNCHRONIZE"),
    ],
)
def test_process_access_bit_reads_as_winnt_name(bit: int, name: str) -> None:
    assert PROCESS_ACCESS_RIGHTS[bit] == name


def test_unnamed_access_bits_are_shown_in_hex() -> None:
    assert access_mask("0x4010") == "VM_READ | 0x4000"


def test_access_mask_zero_reads_as_no_rights() -> None:
    assert access_mask("0x0") == "no access rights"


@pytest.mark.parametrize("raw", ["-", "", "0x", "zz", None, True, "0x100000000"])
def test_access_mask_garbage_reads_as_none(raw: object) -> None:
    assert access_mask(raw) is None


def test_access_mask_field_is_decoded_on_handle_and_access_events() -> None:
    assert decode_field("AccessMask", "0x10", event_id=4656) == "VM_READ"
    assert decode_field("AccessMask", "0x10", event_id=4663, object_type="Process") == "VM_READ"


def test_access_mask_field_of_a_file_or_other_event_is_not_read_as_process_rights() -> None:
    assert decode_field("AccessMask", "0x1", event_id=4663, object_type="File") is None
    assert decode_field("AccessMask", "0x1", event_id=5145) is None
    assert decode_field("AccessMask", "0x1") is None


def test_granted_access_field_is_decoded_without_event_context() -> None:
    assert decode_field("GrantedAccess", "0x1010") == "VM_READ | QUERY_LIMITED_INFORMATION"
    assert decode_field("GrantedAccess", "0x1010", target="C:\\WINDOWS\\System32\\LSASS.EXE") == (
        "VM_READ | QUERY_LIMITED_INFORMATION (0x1010: mimikatz sekurlsa)"
    )
    assert decode_field("AccessMask", "0x1410", event_id=4656, object_type="Process",
                        target="\\Device\\HarddiskVolume2\\Windows\\System32\\lsass.exe") == (
        "VM_READ | QUERY_INFORMATION | QUERY_LIMITED_INFORMATION (0x1410: procdump / older mimikatz)"
    )


# --------------------------------------------------------------------------------------------
# Privileges
# --------------------------------------------------------------------------------------------


def test_privilege_list_reads_as_its_sensitive_privileges() -> None:
    raw = (
        "SeSecurityPrivilege\n\t\t\tSeBackupPrivilege\n\t\t\tSeChangeNotifyPrivilege\n\t\t\tSeDebugPrivilege"
    )
    assert privileges(raw) == "sensitive: SeSecurityPrivilege, SeBackupPrivilege, SeDebugPrivilege"


def test_privilege_list_as_winlogbeat_array_is_read_too() -> None:
    assert privileges(["SeTcbPrivilege", "SeChangeNotifyPrivilege"]) == "sensitive: SeTcbPrivilege"


def test_privilege_list_with_nothing_sensitive_reads_as_none() -> None:
    assert privileges("SeChangeNotifyPrivilege SeIncreaseWorkingSetPrivilege") is None
    assert privileges("-") is None
    assert privileges("") is None
    assert privileges(42) is None


def test_privilege_list_repeats_a_privilege_once() -> None:
    assert privileges("SeDebugPrivilege sedebugprivilege") == "sensitive: SeDebugPrivilege"


def test_sensitive_privileges_are_the_fourteen_of_the_domain_reference() -> None:
    assert len(SENSITIVE_PRIVILEGES) == 14
    assert "SeDebugPrivilege" in SENSITIVE_PRIVILEGES
    assert "SeDelegateSessionUserImpersonatePrivilege" in SENSITIVE_PRIVILEGES


def test_privilege_list_field_is_decoded_by_name() -> None:
    assert decode_field("PrivilegeList", "SeDebugPrivilege", event_id=4672) == "sensitive: SeDebugPrivilege"


# --------------------------------------------------------------------------------------------
# Event names and channels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("Security", "Security"),
        ("security", "Security"),
        ("System", "System"),
        ("Microsoft-Windows-Sysmon/Operational", "Sysmon"),
        ("microsoft-windows-sysmon/operational", "Sysmon"),
        ("Microsoft-Windows-PowerShell/Operational", "PowerShell"),
        ("PowerShellCore/Operational", "PowerShell"),
        (
            "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
            "TerminalServices-LocalSessionManager",
        ),
        (
            "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational",
            "TerminalServices-RemoteConnectionManager",
        ),
    ],
)
def test_channel_name_maps_to_its_key(channel: str, expected: str) -> None:
    assert channel_key(channel) == expected


@pytest.mark.parametrize("channel", ["Application", "", None, 5])
def test_other_channels_have_no_key(channel: object) -> None:
    assert channel_key(channel) is None


def test_the_classic_windows_powershell_log_is_not_taken_for_the_operational_one() -> None:
    # Their event numbers mean different things: 400 is an engine start there, nothing here.
    assert channel_key("Windows PowerShell") == "Windows PowerShell"
    assert event_name("Windows PowerShell", 4104) is None
    assert event_name("Microsoft-Windows-PowerShell/Operational", 400) is None


@pytest.mark.parametrize(
    ("channel", "event_id", "fragment"),
    [
        ("Security", 4625, "failed logon"),
        ("SECURITY", 4624, "logon"),
        ("Security", 1102, "audit log cleared"),
        ("System", 7045, "service installed"),
        ("Microsoft-Windows-Sysmon/Operational", 10, "process access"),
        ("Microsoft-Windows-Sysmon/Operational", 22, "DNS query"),
        ("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 22, "shell start"),
        ("Microsoft-Windows-PowerShell/Operational", 4104, "script block"),
        ("Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational", 1149, "RDP"),
    ],
)
def test_event_name_reads_as_short_description(channel: str, event_id: int, fragment: str) -> None:
    result = event_name(channel, event_id)
    assert result is not None and fragment in result


@pytest.mark.parametrize(
    ("channel", "event_id"),
    [
        ("Security", 1),  # ID of another channel
        ("Application", 4624),
        (None, 4624),
        ("Security", None),
        ("Security", 99999),
    ],
)
def test_event_name_unknown_reads_as_none(channel: str | None, event_id: int | None) -> None:
    assert event_name(channel, event_id) is None


def test_event_names_cover_the_domain_reference_table() -> None:
    expected = {
        "Security": {4624, 4625, 4634, 4647, 4648, 4672, 4688, 4689, 4656, 4663, 1102, 4608, 4609,
                     4720, 4722, 4724, 4726, 4738, 4728, 4732, 4756, 4768, 4769, 4771, 4776, 4778,
                     4779, 4697, 4698, 4702, 5140, 5145},
        "System": {104, 6005, 6006, 6009, 7045},
        "PowerShell": {4103, 4104},
        "Sysmon": {1, 3, 5, 7, 8, 10, 11, 12, 13, 14, 22},
        "TerminalServices-LocalSessionManager": {21, 22, 23, 24, 25},
        "TerminalServices-RemoteConnectionManager": {1149},
    }  # fmt: skip
    for channel, ids in expected.items():
        for event_id in ids:
            assert (channel, event_id) in EVENT_NAMES, (channel, event_id)


# --------------------------------------------------------------------------------------------
# Dispatcher details and hostile input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LogonType", "10", "RemoteInteractive"),
        ("logontype", 3, "Network"),
        ("winlog.event_data.LogonType", "9", "NewCredentials"),
        ("TicketEncryptionType", "0x12", "AES256-CTS-HMAC-SHA1-96"),
        ("TokenElevationType", "%%1936", PERCENT_STRINGS["%%1936"]),
        ("CommandLine", "whoami /all", None),
        ("TargetUserName", "Administrator", None),
    ],
)
def test_decode_field_picks_the_decoder_by_field_name(name: str, value: object, expected: str | None) -> None:
    assert decode_field(name, value) == expected


def test_decode_field_of_a_non_string_name_reads_as_none() -> None:
    assert decode_field(42, "3") is None  # type: ignore[arg-type]


_FIELD_NAMES = [
    "LogonType", "Status", "SubStatus", "FailureReason", "TokenElevationType", "MandatoryLabel",
    "IntegrityLevel", "SubjectUserSid", "UserID", "TargetLogonId", "GrantedAccess", "AccessMask",
    "TicketEncryptionType", "PrivilegeList", "AccessList", "CommandLine",
]  # fmt: skip

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.from_regex(
        r"\s*(0[xX][0-9a-fA-F]{0,20}|[0-9]{0,25}|%%[0-9]{0,6}|S-1-[0-9-]{0,40})\s*", fullmatch=True
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(_FIELD_NAMES) | st.text(max_size=30),
    value=_values,
    event_id=st.none() | st.sampled_from([4625, 4656, 4663, 4768, 4771, 4776]) | st.integers(),
    channel=st.none() | st.text(max_size=40),
)
def test_decode_field_never_raises_and_returns_text_or_none(
    name: str, value: object, event_id: int | None, channel: str | None
) -> None:
    result = decode_field(name, value, event_id=event_id, channel=channel)
    assert result is None or isinstance(result, str)


@settings(max_examples=200, deadline=None)
@given(value=_values)
def test_every_decoder_never_raises_on_garbage(value: object) -> None:
    for decoder in (
        logon_type, ntstatus, kerberos_status, kerberos_encryption, percent_string, token_elevation,
        mandatory_label, sid, logon_id, access_mask, privileges,
    ):  # fmt: skip
        result = decoder(value)
        assert result is None or isinstance(result, str)
    for parser in (parse_int, parse_hex):
        number = parser(value)
        assert number is None or (isinstance(number, int) and 0 <= number < 2**64)


@settings(max_examples=200, deadline=None)
@given(channel=st.none() | st.text(max_size=80), event_id=st.none() | st.integers() | st.text(max_size=8))
def test_event_name_never_raises(channel: str | None, event_id: int | None) -> None:
    result = event_name(channel, event_id)
    assert result is None or isinstance(result, str)


@given(number=st.integers(min_value=0, max_value=2**64 - 1))
def test_parse_int_round_trips_hex_and_decimal_text(number: int) -> None:
    assert parse_int(hex(number)) == number
    assert parse_int(hex(number).upper().replace("0X", "0x")) == number
    assert parse_int(str(number)) == number
    assert parse_hex(f"{number:x}") == number


def test_engine_decode_uses_only_the_standard_library() -> None:
    source = Path(decode.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "re", "collections", "types", "typing"}
