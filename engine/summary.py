"""One readable line per event, built from the hot fields (what Hayabusa calls the details column)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import decode
from .channels import short_channel
from .ingest.normalise import LSM_CHANNEL, RCM_CHANNEL, SYSMON_CHANNEL, WINDOWS_POWERSHELL


def _base(path: object) -> str:
    text = str(path or "")
    return text.replace("/", "\\").rsplit("\\", 1)[-1]


def _account(domain: object, user: object) -> str:
    if user and domain:
        return f"{domain}\\{user}"
    return str(user or "")


def _args(image: object, command_line: object) -> str:
    """The command line with the program itself dropped, so `cmd.exe → whoami /all` reads well."""
    cmd = str(command_line or "").strip()
    if not cmd:
        return _base(image)
    exe = _base(image).lower()
    head, _, rest = cmd.partition(" ")
    if cmd.startswith('"'):
        end = cmd.find('"', 1)
        head, rest = cmd[1:end] if end > 0 else cmd[1:], cmd[end + 1:].strip() if end > 0 else ""
    if exe and _base(head).lower() in (exe, exe.removesuffix(".exe")):
        return f"{_base(image)} {rest}".strip()
    return cmd


def _from(ip: object, workstation: object) -> str:
    if ip:
        return f"from {ip}" + (f" ({workstation})" if workstation else "")
    return f"from ({workstation})" if workstation else ""


def _endpoint(address: object, port: object) -> str:
    """address:port, with an IPv6 address in brackets so its last group is not read as the port."""
    text, shown = str(address), "" if port is None else port
    return f"[{text}]:{shown}" if ":" in text else f"{text}:{shown}"


def _hex(v: object) -> str:
    return f"0x{int(v):x}" if isinstance(v, int) else ""


_GROUP_MEMBER_EVENTS = frozenset({4728, 4729, 4732, 4733, 4746, 4747, 4751, 4752, 4756, 4757, 4761, 4762})


_ACCOUNT_VERBS = {4720: "created", 4722: "enabled", 4723: "changed the password of", 4724: "reset the password of",
                  4725: "disabled", 4726: "deleted", 4738: "changed", 4767: "unlocked",
                  4781: "renamed"}


_RDP_STEPS = {1149: "RDP authenticated", 21: "RDP logon", 22: "RDP shell start", 23: "RDP logoff",
              24: "RDP disconnected", 25: "RDP reconnected", 4778: "RDP reconnected", 4779: "RDP disconnected"}


_WFP_VERBS = {5152: "dropped", 5153: "vetoed", 5154: "listen permitted", 5155: "listen blocked", 5156: "permitted",
              5157: "blocked", 5158: "bind permitted", 5159: "bind blocked"}


def _rdp(channel: str, eid: object) -> bool:
    return ((channel == RCM_CHANNEL and eid == 1149) or (channel == LSM_CHANNEL and eid in (21, 22, 23, 24, 25))
            or (channel == "Security" and eid in (4778, 4779)))


def summarise(row: Mapping[str, Any]) -> str:
    """The summary of one event row (a mapping of events columns)."""
    eid = row.get("event_id")
    channel = row.get("channel") or ""
    sysmon = channel == SYSMON_CHANNEL
    g = row.get
    if channel == "Security" and eid in (4624, 4625, 4634, 4647, 4672, 4648):
        who = _account(g("target_domain"), g("target_user"))
        if eid == 4672:
            return f"{_account(g('subject_domain'), g('subject_user'))}  privileges: {g('privileges') or ''}".strip()
        if eid == 4648:
            server = " ".join(str(x) for x in (g("dst_host"), g("dst_ip") and f"({g('dst_ip')})") if x)
            via = f" via {_base(g('process_image'))}" if g("process_image") else ""
            return f"{_account(g('subject_domain'), g('subject_user'))} as {who} → {server or '?'}{via}"
        parts = [who]
        if eid == 4625:
            # Why it failed comes right after who: the summary column is narrow at 80 columns. The
            # meaning is the most specific code's; the codes follow in Windows' order (Status/SubStatus).
            status, sub = g("status"), g("substatus")
            if sub not in (None, 0) and sub != status:
                parts.append(f"{decode.ntstatus(sub) or 'failed'} ({_hex(status)}/{_hex(sub)})")
            elif status is not None:
                parts.append(f"{decode.ntstatus(status) or 'failed'} ({_hex(status)})")
        lt = g("logon_type")
        if lt is not None:
            parts.append(f"type {lt} {decode.logon_type(lt) or ''}".strip())
        if g("auth_package"):
            parts.append(str(g("auth_package")))
        if g("src_ip") or g("workstation"):
            parts.append(_from(g("src_ip"), g("workstation")))
        return "  ".join(p for p in parts if p)
    if _rdp(channel, eid):
        # Who connected and from where first, then which step of the RDP session this is: the
        # timeline's summary column is narrow at 80 columns.
        parts = [_account(g("target_domain"), g("target_user")), _from(g("src_ip"), g("workstation")),
                 _RDP_STEPS.get(eid if isinstance(eid, int) else -1, "RDP")]
        return "  ".join(p for p in parts if p)
    if channel == "Security" and eid in _GROUP_MEMBER_EVENTS:
        verb = "removed" if eid in (4729, 4733, 4747, 4752, 4757, 4762) else "added"
        member = g("member_name") or g("member_sid") or "?"
        return (f"{_account(g('subject_domain'), g('subject_user')) or '?'} {verb} {member} "
                f"{'to' if verb == 'added' else 'from'} {_account(g('target_domain'), g('target_user'))}")
    if channel == "Security" and eid == 4740:
        # The subject is the machine that logged the lockout, and TargetDomainName there is the
        # caller computer (where the bad passwords came from), not the account's domain.
        caller = f"  (caller {g('target_domain')})" if g("target_domain") else ""
        return f"{g('target_user') or g('target_sid') or '?'} locked out{caller}"
    if channel == "Security" and eid in _ACCOUNT_VERBS:
        return (f"{_account(g('subject_domain'), g('subject_user')) or '?'} {_ACCOUNT_VERBS[eid]} "
                f"{_account(g('target_domain'), g('target_user')) or g('target_sid') or '?'}")
    if channel == "Security" and eid in (5140, 5145):
        who = _account(g("subject_domain"), g("subject_user"))
        where = f"  from {g('src_ip')}" if g("src_ip") else ""
        return f"{who}{where} → {g('object_name') or '?'}".strip()
    if sysmon and eid == 22:
        return f"{_base(g('process_image'))} → DNS {g('dst_host') or '?'}"
    if channel == "Security" and eid in (4768, 4769, 4771, 4776):
        # Credential validation on a domain controller: who, from where, and the result.
        status = g("status")
        meaning: str | None
        if status == 0:
            meaning = "success"
        elif eid == 4776:
            meaning = decode.ntstatus(status)
        else:
            meaning = decode.kerberos_status(status)
        parts = [str(g("target_user") or "")]
        if status is not None:
            # The result right after who, as for 4625: the summary column is narrow at 80 columns.
            parts.append(f"{meaning} ({_hex(status)})" if meaning else _hex(status))
        if eid == 4769 and g("service_name"):
            parts.append(f"ticket for {g('service_name')}")
        if g("src_ip") or g("workstation"):
            # 4776 names the client machine only (Workstation): the source of a spray on a DC.
            parts.append(f"from {g('src_ip') or g('workstation')}")
        return "  ".join(p for p in parts if p)
    if (channel == "Security" and eid == 4688) or (sysmon and eid == 1):
        # Before Windows 10 a 4688 names its parent by PID only.
        parent = _base(g("parent_image")) or (f"pid {g('parent_pid')}" if g("parent_pid") is not None else "?")
        return f"{parent} → {_args(g('process_image'), g('command_line'))}"
    if channel == "Security" and isinstance(eid, int) and 5152 <= eid <= 5159:
        # Source and Dest as the event names them: the initiating side is Source.
        verb = _WFP_VERBS.get(eid, "")
        local = _endpoint(g("src_ip") or "?", g("src_port"))
        if eid in (5154, 5155, 5158, 5159):  # a listen or a bind has only the local end
            return f"{_base(g('process_image'))}  {local}  {verb}".strip()
        return f"{_base(g('process_image'))}  {local} → {_endpoint(g('dst_ip') or '?', g('dst_port'))}  {verb}".strip()
    if channel == "System" and eid in (7034, 7035, 7036, 7040) and g("service_name"):
        return f"service {g('service_name')}: {decode.event_name(channel, eid)}"
    if channel == WINDOWS_POWERSHELL and eid in (400, 403, 600, 800) and g("command_line"):
        return f"{decode.event_name(channel, eid)}: {g('command_line')}"
    if sysmon and eid == 5:
        return f"{_base(g('process_image'))} exited"
    if sysmon and eid in (6, 7):
        loaded = g("object_name") or "?"
        return f"driver {loaded}" if eid == 6 else f"{_base(g('process_image'))} loaded {loaded}"
    if sysmon and eid == 2:
        return f"{_base(g('process_image'))} changed the creation time of {g('object_name') or '?'}"
    if sysmon and eid in (8, 10):
        return f"{_base(g('process_image'))} → {_base(g('target_image'))} {_hex(g('granted_access'))}".strip()
    if sysmon and eid == 3:
        return (f"{_base(g('process_image'))}  {_endpoint(g('src_ip') or '', g('src_port'))} → "
                f"{_endpoint(g('dst_host') or g('dst_ip') or '', g('dst_port'))}")
    if channel == "Security" and eid in (4656, 4663):
        return f"{_base(g('process_image'))} → {g('object_name') or ''} {_hex(g('granted_access'))}".strip()
    if (channel == "System" and eid == 7045) or (channel == "Security" and eid == 4697):
        return f"service {g('service_name') or ''}  {g('command_line') or ''}".strip()
    if eid in (4698, 4702):
        return f"task {g('task_name') or ''} by {_account(g('subject_domain'), g('subject_user'))}"
    # 1102 is the Security log's own "cleared"; 104 only in System (Eventlog): other channels reuse
    # the number for unrelated events (RdpCoreTS 104 is a connection event).
    eventlog = str(g("provider") or "Microsoft-Windows-Eventlog").lower().endswith("eventlog")
    if (channel == "Security" and eid == 1102) or (channel == "System" and eid == 104 and eventlog):
        cleared = str(g("object_name") or "")
        if cleared.startswith("Microsoft-Windows-"):
            cleared = short_channel(cleared)  # the Sysmon log, as the channel column says it
        log = "Security log" if eid == 1102 else f"{cleared} log" if cleared else "event log"
        return f"{log} cleared by {_account(g('subject_domain'), g('subject_user')) or '?'}"
    if eid == 4103 and g("script_text"):
        return "module: " + " ".join(str(g("script_text")).split())
    if eid in (4104,) and g("script_text"):
        part = f"[{g('script_part')}/{g('script_parts')}] " if g("script_parts") else ""
        return part + " ".join(str(g("script_text")).split())
    if sysmon and eid in (9, 11, 12, 13, 14, 15, 17, 18, 23, 26):
        return f"{_base(g('process_image'))} → {g('object_name') or ''}"
    name = decode.event_name(channel, eid) or ""
    subject, target = _account(g("subject_domain"), g("subject_user")), _account(g("target_domain"), g("target_user"))
    if subject and target:
        return f"{subject} → {target}"
    if subject or target:
        return f"{subject or target}  {name}".strip()
    return name


def user_of(row: Mapping[str, Any]) -> str:
    """The account the event is about: the one logging on, created, added to a group (not the
    group), or else the one acting."""
    if row.get("member_name") or row.get("member_sid"):
        return str(row.get("member_name") or row.get("member_sid"))
    if row.get("channel") == "Security" and row.get("event_id") == 4740 and row.get("target_user"):
        return str(row["target_user"])  # its TargetDomainName is the caller computer
    named = _account(row.get("target_domain"), row.get("target_user")) or _account(
        row.get("subject_domain"), row.get("subject_user"))
    if named or row.get("channel") == "Microsoft-Windows-Sysmon/Operational":
        # Sysmon writes every event as its own service (SYSTEM): its UserID says nothing of who
        # loaded the DLL or opened lsass, so a Sysmon event without a named user shows none.
        return named
    return _sid_account(row.get("user_sid"))


def _sid_account(value: object) -> str:
    """The event's own UserID when no account is named in its data (a service install, a script
    block): the well-known name where there is one (SYSTEM), else the SID itself."""
    if not value:
        return ""
    return decode.sid(value) or str(value)


def process_of(row: Mapping[str, Any]) -> str:
    return _base(row.get("process_image"))


# Fields that say nothing about what happened (schema, routing, ids of the record itself).
_NOISE = frozenset({"version", "opcode", "keywords", "task", "level", "eventrecordid", "processid", "threadid",
                    "channel", "computer", "providername", "provider_name", "eventid", "qualifiers", "sourcename",
                    "xmlns", "binary", "severity", "severityvalue", "eventtype", "executionprocessid",
                    "executionthreadid", "recordnumber", "eventreceivedtime", "sourcemoduletype", "sourcemodulename",
                    "hostname", "eventtime", "@timestamp", "category", "message", "providerguid", "host",
                    "accounttype", "opcodevalue", "taskvalue", "keywordsvalue", "activityid", "relatedactivityid"})
_ZERO_GUID = "{00000000-0000-0000-0000-000000000000}"


def generic(fields: Mapping[str, Any], *, limit: int = 4, width: int = 60) -> str:
    """A line for an event no summary above knows: its first meaningful fields, `Name: value`, each
    value cut for display (storage keeps it whole). Positional data (classic providers) is joined."""
    parts: list[str] = []
    for key, value in fields.items():
        if len(parts) >= limit:
            break
        if str(key).lower() in _NOISE or str(key).startswith("#"):
            continue
        if isinstance(value, Mapping):
            inner = value.get("#text")
            value = inner if inner is not None else None
        if isinstance(value, list):
            value = " · ".join(str(v) for v in value if v not in (None, "", "-"))
        text = " ".join(str(value if value is not None else "").split())
        if text in ("", "-", "{}", "[]", "null", _ZERO_GUID, _ZERO_GUID.strip("{}")):
            continue
        if len(text) > width:
            text = text[: width - 1] + "…"
        parts.append(text if key == "Data" else f"{key}: {text}")
    return "  ".join(parts)
