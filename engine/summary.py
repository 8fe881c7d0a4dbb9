"""One readable line per event, built from the hot fields (what Hayabusa calls the details column)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import decode

SYSMON = "Microsoft-Windows-Sysmon/Operational"


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


def _hex(v: object) -> str:
    return f"0x{int(v):x}" if isinstance(v, int) else ""


def summarise(row: Mapping[str, Any]) -> str:
    """The summary of one event row (a mapping of events columns)."""
    eid = row.get("event_id")
    channel = row.get("channel") or ""
    sysmon = channel == SYSMON
    g = row.get
    if channel == "Security" and eid in (4624, 4625, 4634, 4647, 4672, 4648):
        who = _account(g("target_domain"), g("target_user"))
        if eid == 4672:
            return f"{_account(g('subject_domain'), g('subject_user'))}  privileges: {g('privileges') or ''}".strip()
        if eid == 4648:
            return (f"{_account(g('subject_domain'), g('subject_user'))} as {who} → "
                    f"{g('dst_host') or ''} via {_base(g('process_image'))}").strip()
        parts = [who]
        lt = g("logon_type")
        if lt is not None:
            parts.append(f"type {lt} {decode.logon_type(lt) or ''}".strip())
        if g("auth_package"):
            parts.append(str(g("auth_package")))
        if g("src_ip"):
            ws = g("workstation")
            parts.append(f"from {g('src_ip')}" + (f" ({ws})" if ws else ""))
        elif g("workstation"):
            parts.append(f"from ({g('workstation')})")
        if eid == 4625:
            code = g("substatus") if g("substatus") not in (None, 0) else g("status")
            if code is not None:
                parts.append(f"{_hex(code)} {decode.ntstatus(code) or ''}".strip())
        return "  ".join(parts)
    if channel == "Security" and eid in (4768, 4769, 4771, 4776):
        # Credential validation on a domain controller: who, from where, and the result.
        status = g("status")
        if eid == 4776:
            meaning = "success" if status == 0 else decode.ntstatus(status)
        else:
            meaning = decode.kerberos_status(status)
        parts = [str(g("target_user") or "")]
        if eid == 4769 and g("service_name"):
            parts.append(f"ticket for {g('service_name')}")
        if g("src_ip"):
            parts.append(f"from {g('src_ip')}")
        if status is not None:
            parts.append(f"{_hex(status)} {meaning or ''}".strip())
        return "  ".join(p for p in parts if p)
    if (channel == "Security" and eid == 4688) or (sysmon and eid == 1):
        return f"{_base(g('parent_image')) or '?'} → {_args(g('process_image'), g('command_line'))}"
    if sysmon and eid in (8, 10):
        return f"{_base(g('process_image'))} → {_base(g('target_image'))} {_hex(g('granted_access'))}".strip()
    if sysmon and eid == 3:
        return (f"{_base(g('process_image'))}  {g('src_ip') or ''}:{g('src_port') or ''} → "
                f"{g('dst_host') or g('dst_ip') or ''}:{g('dst_port') or ''}")
    if channel == "Security" and eid in (4656, 4663):
        return f"{_base(g('process_image'))} → {g('object_name') or ''} {_hex(g('granted_access'))}".strip()
    if eid in (7045, 4697):
        return f"service {g('service_name') or ''}  {g('process_image') or ''}".strip()
    if eid in (4698, 4702):
        return f"task {g('task_name') or ''} by {_account(g('subject_domain'), g('subject_user'))}"
    if eid in (1102, 104):
        return f"log cleared by {_account(g('subject_domain'), g('subject_user'))}".strip()
    if eid in (4104,) and g("script_text"):
        part = f"[{g('script_part')}/{g('script_parts')}] " if g("script_parts") else ""
        return part + " ".join(str(g("script_text")).split())
    if sysmon and eid in (11, 12, 13, 14, 23, 26):
        return f"{_base(g('process_image'))} → {g('object_name') or ''}"
    if g("target_user") or g("subject_user"):
        return f"{_account(g('subject_domain'), g('subject_user'))} → {_account(g('target_domain'), g('target_user'))}"
    name = decode.event_name(channel, eid)
    return name or ""


def user_of(row: Mapping[str, Any]) -> str:
    return _account(row.get("target_domain"), row.get("target_user")) or _account(
        row.get("subject_domain"), row.get("subject_user"))


def process_of(row: Mapping[str, Any]) -> str:
    return _base(row.get("process_image"))
