"""Ctrl-P: fuzzy search (rapidfuzz) over actions, presets, hosts, users, images, event IDs and saved
filters. Choosing a value opens a view of just that value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.style import Style as VisualStyle

from engine import views
from engine.decode import event_name

from ..keymap import ACTIONS
from ..safe_text import escape
from ..session import Session

if TYPE_CHECKING:
    from .timeline import TimelineScreen

MIN_SCORE = 60
LIMIT = 400
_EVENT_CHANNELS = ("Security", "System", "Microsoft-Windows-Sysmon/Operational",
                   "Microsoft-Windows-PowerShell/Operational",
                   "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
                   "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational")


@dataclass
class Entry:
    text: str  # what is matched and shown (escaped)
    help: str  # plain words, never event data (the palette renders help as markup)
    run: Callable[[], Any]


@dataclass
class Catalog:
    hosts: list[str]
    users: list[str]
    images: list[str]
    event_ids: list[int]


def load_catalog(session: Session) -> Catalog:
    """The values worth offering, most frequent first (runs in a worker)."""
    with session.cursor() as cur:
        everything = views.resolve(cur, "", session.field_names)

        def values(column: str) -> list[str]:
            return [str(v) for v, _n in views.frequency(cur, everything, column, limit=LIMIT) if v not in (None, "")]

        users = values("target_user")
        for u in values("subject_user"):
            if u not in users:
                users.append(u)
        return Catalog(values("host"), users[:LIMIT], values("process_image"),
                       [int(v) for v, _n in views.frequency(cur, everything, "event_id", limit=LIMIT) if v is not None])


def _event_label(event_id: int) -> str:
    names = []
    for channel in _EVENT_CHANNELS:
        name = event_name(channel, event_id)
        if name and name not in names:
            names.append(name)
    return f"event {event_id}" + (f"  {' / '.join(names)}" if names else "")


def entries(screen: TimelineScreen, catalog: Catalog | None) -> list[Entry]:
    from .timeline import quote_value

    out: list[Entry] = []
    km = screen.keymap
    for action, description in ACTIONS["timeline"].items():
        if action == "command_palette":
            continue
        keys = km.display("timeline", action)
        out.append(Entry(f"{description}" + (f"  ({keys})" if keys else ""), "action",
                         getattr(screen, f"action_{action}")))
    for preset in km.presets.values():
        keys = ", ".join(preset.keys)
        out.append(Entry(f"{escape(preset.title, 200)}" + (f"  ({keys})" if keys else ""), "preset",
                         partial(screen.apply_preset, preset)))
    for name, text in screen.session.saved_filters:
        out.append(Entry(f"saved: {escape(name, 200)}  {escape(text, 300)}", "saved filter",
                         partial(screen.apply_filter_text, text, name)))
    if catalog is not None:
        for host in catalog.hosts:
            out.append(Entry(f"host {escape(host, 200)}", "events of this host",
                             partial(screen.apply_filter_text, f"host:{quote_value(host)}", f"host {host}")))
        for user in catalog.users:
            out.append(Entry(f"user {escape(user, 200)}", "events of this account",
                             partial(screen.apply_filter_text, f"user:{quote_value(user)}", f"user {user}")))
        for image in catalog.images:
            out.append(Entry(f"image {escape(image, 300)}", "events of this program",
                             partial(screen.apply_filter_text, f"process:{quote_value(image)}", f"image {image}")))
        for eid in catalog.event_ids:
            label = _event_label(eid)
            out.append(Entry(label, "events with this ID",
                             partial(screen.apply_filter_text, f"eid:{eid}", label)))
    return out


def score(query: str, text: str) -> float:
    """0..1: rapidfuzz's weighted ratio, with exact substrings ranked first."""
    q = default_process(query)
    t = default_process(text)
    if not q:
        return 0.0
    s = fuzz.WRatio(q, t)
    if q in t:
        s = max(s, 90 + 10 * len(q) / max(1, len(t)))
    return s / 100.0


def highlight(text: str, query: str) -> Content:
    """Plain content (never markup) with the matched substring emphasised."""
    content = Content(text)
    start = text.lower().find(query.lower().strip())
    if query.strip() and start >= 0:
        content = content.stylize(VisualStyle(bold=True, underline=True), start, start + len(query.strip()))
    return content


class AshiatoCommands(Provider):
    async def startup(self) -> None:
        ensure = getattr(self.app, "ensure_catalog", None)
        if ensure is not None:
            ensure()

    def _screen(self) -> TimelineScreen | None:
        from .timeline import TimelineScreen

        screen = getattr(self.app, "timeline_screen", None)
        return screen if isinstance(screen, TimelineScreen) else None

    def _entries(self) -> list[Entry]:
        screen = self._screen()
        if screen is None:
            return []
        return entries(screen, getattr(self.app, "catalog", None))

    async def discover(self) -> Hits:
        for entry in self._entries():
            if entry.help in ("action", "preset", "saved filter"):
                yield DiscoveryHit(Content(entry.text), entry.run, text=entry.text, help=entry.help)

    async def search(self, query: str) -> Hits:
        scored = []
        for entry in self._entries():
            s = score(query, entry.text)
            if s * 100 >= MIN_SCORE:
                scored.append((s, entry))
        scored.sort(key=lambda item: -item[0])
        for s, entry in scored[:200]:
            yield Hit(s, highlight(entry.text, query), entry.run, text=entry.text, help=entry.help)
