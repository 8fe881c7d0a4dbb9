"""Channel names as the timeline shows them, and back: `Sysmon` is what a responder reads in the
channel column, so it is also what they type in a filter."""

from __future__ import annotations

SHORT_CHANNELS = {
    "security": "Security",
    "system": "System",
    "application": "Application",
    "microsoft-windows-sysmon/operational": "Sysmon",
    "microsoft-windows-powershell/operational": "PowerShell",
    "windows powershell": "WinPS",
    "powershellcore/operational": "PwshCore",
    "microsoft-windows-terminalservices-localsessionmanager/operational": "TS-LSM",
    "microsoft-windows-terminalservices-remoteconnectionmanager/operational": "TS-RCM",
    "microsoft-windows-remotedesktopservices-rdpcorets/operational": "RdpCoreTS",
    "microsoft-windows-windows defender/operational": "Defender",
    "microsoft-windows-taskscheduler/operational": "TaskSched",
    "microsoft-windows-wmi-activity/operational": "WMI",
    "microsoft-windows-bits-client/operational": "BITS",
    "microsoft-windows-grouppolicy/operational": "GroupPolicy",
    "microsoft-windows-winrm/operational": "WinRM",
    "microsoft-windows-windows firewall with advanced security/firewall": "Firewall",
    "microsoft-windows-dns-client/operational": "DNS-Client",
    "microsoft-windows-smbserver/security": "SMBServer",
}
_FULL_NAMES = {short.lower(): full for full, short in SHORT_CHANNELS.items()}
_AFFIXES = ("Microsoft-Windows-", "")
_SUFFIXES = ("/Operational", "/Admin", "")


def short_channel(channel: str) -> str:
    """"Microsoft-Windows-Sysmon/Operational" → "Sysmon"; others lose the common affixes."""
    if not channel:
        return ""
    known = SHORT_CHANNELS.get(channel.lower())
    if known:
        return known
    out = channel.removeprefix("Microsoft-Windows-")
    for suffix in ("/Operational", "/Admin"):
        out = out.removesuffix(suffix)
    return out


def channel_spellings(value: str) -> list[str]:
    """The channel names (lower case) that `value` may stand for: itself, the channel a short name
    of the timeline shows, and the name with the affixes the timeline drops put back."""
    v = value.strip().lower()
    names = [v]
    if v in _FULL_NAMES:
        names.append(_FULL_NAMES[v])
    names += [f"{a}{v}{s}".lower() for a in _AFFIXES for s in _SUFFIXES if a or s]
    return list(dict.fromkeys(names))
