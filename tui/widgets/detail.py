"""One event, vertically: every field with its raw value and, next to it, what it means.

Used full screen (Enter) and as the side pane of wide terminals. Values are escaped and cut for
display (a 1 MB script shows its first few thousand characters); `copy` keeps the stored value.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.decode import decode_field, event_name

from ..safe_text import DETAIL_LIMIT, escape, escape_lines, fit, to_str
from .columns import format_time, short_channel

NAME_WIDTH = 22
RAW_LIMIT = 50_000  # characters of the original document shown; y copies all of it


@dataclass
class Entry:
    """One focusable line group: a field, or a header fact."""

    name: str
    lines: list[str]  # escaped display text of the value (first line next to the name)
    decoded: str | None = None
    copy: str = ""
    section: bool = False  # a section title, not a field


def _value_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return to_str(value)


def build_entries(d: dict[str, Any], *, local_time: bool = False, tag: str | None = None,
                  marked: bool = False) -> list[Entry]:
    channel = d.get("channel")
    eid = d.get("event_id")
    entries: list[Entry] = []
    title = f"{short_channel(channel) or '?'} {eid if eid is not None else ''}"
    name = event_name(channel, eid)
    entries.append(Entry(title.strip(), [escape(name or "", 200)], section=True))

    def fact(label: str, value: Any, decoded: str | None = None) -> None:
        if value is None or value == "":
            return
        text = _value_text(value)
        entries.append(Entry(label, escape_lines(text, DETAIL_LIMIT), decoded, text))

    ts = d.get("ts")
    fact("time (UTC)", format_time(ts, False))
    if local_time and ts is not None:
        fact("time (local)", format_time(ts, True))
    if d.get("utc_time") is not None and d.get("utc_time") != ts:
        fact("UtcTime", d["utc_time"].isoformat(sep=" "))
    fact("host", d.get("host"))
    fact("channel", channel)
    fact("provider", d.get("provider"))
    fact("event id", eid, name)
    fact("record id", d.get("record_id"))
    fact("summary", d.get("summary"))
    if marked or tag:
        fact("mark", tag or "marked")
    fact("source", d.get("path"))
    fact("eid", d.get("eid"))

    script = d.get("script")
    if script:
        entries.append(Entry(f"whole script ({script['parts']} of {script['total']} parts, joined)", [""],
                             section=True))
        entries.append(Entry("ScriptBlockText", escape_lines(script["text"], DETAIL_LIMIT) or [""], None,
                             script["text"]))
    fields = d.get("fields") or []
    if fields:
        entries.append(Entry("event data", [""], section=True))
        object_type = next((to_str(v) for n, v in fields if str(n).lower() == "objecttype"), None)
        # The process an access mask was to: its lsass note belongs on lsass only.
        target = next((to_str(v) for n, v in fields if str(n).lower() in ("targetimage", "objectname")), None)
        for fname, value in fields:
            text = _value_text(value)
            try:
                decoded = decode_field(str(fname), value, event_id=eid, channel=channel, object_type=object_type,
                                       target=target)
            except Exception:  # a decoder must never break the pane
                decoded = None
            entries.append(Entry(escape(fname, 64), escape_lines(text, DETAIL_LIMIT) or [""], decoded, text))
    return entries


def raw_entries(d: dict[str, Any]) -> list[Entry]:
    """The original document, pretty-printed when it is JSON."""
    raw = d.get("raw")
    if raw is None:
        # NXLog-like shapes keep the document as the event data itself.
        raw = json.dumps(dict(d.get("fields") or []), ensure_ascii=False, default=str)
    text = to_str(raw)
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    entries = [Entry("raw", [f"{len(to_str(raw)):,} characters"], section=True)]
    for line in escape_lines(text, RAW_LIMIT, tab="  "):
        entries.append(Entry("", [line], copy=line))
    entries[0].copy = to_str(raw)
    return entries


class DetailView(ScrollView, can_focus=True, inherit_bindings=False):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"detail--name", "detail--section", "detail--decoded", "detail--cursor", "detail--dim"}
    DEFAULT_CSS = """
    DetailView { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 1; scrollbar-gutter: stable; }
    DetailView > .detail--name { color: $text-muted; }
    DetailView > .detail--section { text-style: bold; color: $accent; }
    DetailView > .detail--decoded { color: $success; text-style: italic; }
    DetailView > .detail--cursor { background: $accent 30%; text-style: bold; }
    DetailView > .detail--dim { text-style: dim; }
    """

    def __init__(self, *, show_cursor: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_cursor = show_cursor
        self.event: dict[str, Any] | None = None
        self.raw = False
        self.entries: list[Entry] = []
        self.cursor = 0
        self._lines: list[tuple[int, int]] = []  # (entry index, line within entry)
        self._wrapped: list[list[Any]] = []  # str, or (value, decoded) on one line
        self.local_time = False
        self.tag: str | None = None
        self.marked = False
        self.message = ""

    def show(self, event: dict[str, Any] | None, *, message: str = "") -> None:
        self.event = event
        self.message = message
        self._rebuild(keep_cursor=False)

    def set_raw(self, raw: bool) -> None:
        self.raw = raw
        self._rebuild(keep_cursor=False)

    def _rebuild(self, *, keep_cursor: bool = True) -> None:
        if self.event is None:
            self.entries = [Entry("", [self.message or ""], section=True)]
        elif self.raw:
            self.entries = raw_entries(self.event)
        else:
            self.entries = build_entries(self.event, local_time=self.local_time, tag=self.tag,
                                         marked=self.marked)
        if not keep_cursor:
            self.cursor = next((i for i, e in enumerate(self.entries) if not e.section), 0)
        self.cursor = min(self.cursor, max(0, len(self.entries) - 1))
        self._reflow()
        if not keep_cursor:
            self.scroll_to(y=0, animate=False)

    def on_resize(self) -> None:
        self._reflow()

    def _value_x(self) -> int:
        return 0 if self.raw else min(NAME_WIDTH, max(8, self.content_width // 3)) + 1

    def _reflow(self) -> None:
        width = max(10, self.content_width or 80)
        value_x = self._value_x()
        value_width = max(4, width - value_x)
        self._lines = []
        self._wrapped = []
        for i, entry in enumerate(self.entries):
            wrapped: list[Any] = []
            if entry.section:
                wrapped = [entry.lines[0] if entry.lines else ""]
            else:
                for line in entry.lines or [""]:
                    chunks = chop_cells(line, value_width) if cell_len(line) > value_width else [line]
                    wrapped.extend(chunks or [""])
                if entry.decoded:
                    decoded = "→ " + escape(entry.decoded, 300)
                    if cell_len(wrapped[-1]) + 2 + cell_len(decoded) <= value_width:
                        wrapped[-1] = (wrapped[-1], decoded)
                    else:
                        wrapped.extend(("", chunk) for chunk in chop_cells(decoded, value_width))
            self._wrapped.append(wrapped)
            for j in range(len(wrapped)):
                self._lines.append((i, j))
        self.virtual_size = Size(width, len(self._lines))
        self.refresh()

    # -- cursor -----------------------------------------------------------------------------------------
    def focused_entry(self) -> Entry | None:
        return self.entries[self.cursor] if 0 <= self.cursor < len(self.entries) else None

    def move(self, delta: int) -> None:
        if not self.entries:
            return
        i = self.cursor
        step = 1 if delta > 0 else -1
        for _ in range(abs(delta)):
            j = i + step
            while 0 <= j < len(self.entries) and self.entries[j].section:
                j += step
            if not 0 <= j < len(self.entries):
                break
            i = j
        self.cursor = i
        self._scroll_to_cursor()
        self.refresh()

    def move_to(self, index: int) -> None:
        self.cursor = max(0, min(len(self.entries) - 1, index))
        if self.entries and self.entries[self.cursor].section:
            self.move(1 if index <= 0 else -1)
        self._scroll_to_cursor()
        self.refresh()

    def page(self, pages: int) -> None:
        height = max(1, self.size.height)
        line = self._first_line(self.cursor) + pages * height
        line = max(0, min(len(self._lines) - 1, line))
        if self._lines:
            self.cursor = self._lines[line][0]
            if self.entries[self.cursor].section:
                self.move(1 if pages > 0 else -1)
        self.scroll_to(y=max(0, int(self.scroll_offset.y) + pages * height), animate=False)
        self._scroll_to_cursor()
        self.refresh()

    def _first_line(self, entry: int) -> int:
        for n, (i, _j) in enumerate(self._lines):
            if i == entry:
                return n
        return 0

    def _scroll_to_cursor(self) -> None:
        first = self._first_line(self.cursor)
        last = first + len(self._wrapped[self.cursor]) - 1 if self._wrapped else first
        height = max(1, self.size.height)
        top = int(self.scroll_offset.y)
        if first < top:
            self.scroll_to(y=max(0, first - 1), animate=False)
        elif last >= top + height:
            self.scroll_to(y=max(0, min(first, last - height + 1)), animate=False)

    # -- rendering ----------------------------------------------------------------------------------------
    @property
    def content_width(self) -> int:
        return self.scrollable_content_region.width

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        base = self.rich_style
        n = int(self.scroll_offset.y) + y
        if n >= len(self._lines) or width <= 0:
            return Strip.blank(width, base)
        i, j = self._lines[n]
        entry = self.entries[i]
        text = self._wrapped[i][j]
        is_cursor = self.show_cursor and i == self.cursor and not entry.section
        row_style = base + self.get_component_rich_style("detail--cursor") if is_cursor else base
        if entry.section:
            style = base + self.get_component_rich_style("detail--section")
            segs = [Segment(fit(f"{entry.name}  ", min(width, cell_len(entry.name) + 2)), style)]
            segs.append(Segment(text, base + self.get_component_rich_style("detail--dim")))
            return Strip(segs).crop_extend(0, width, base)
        segs = []
        value_x = self._value_x()
        if value_x:
            name = entry.name if j == 0 else ""
            segs.append(Segment(fit(name, value_x - 1) + " ",
                                row_style + self.get_component_rich_style("detail--name")))
        if isinstance(text, tuple):
            value, decoded = text
            if value:
                segs.append(Segment(value + "  ", row_style))
            segs.append(Segment(decoded, row_style + self.get_component_rich_style("detail--decoded")))
        else:
            segs.append(Segment(text, row_style))
        return Strip(segs).crop_extend(0, width, row_style)

    def plain_lines(self) -> list[str]:
        """The pane as plain text lines (name, value, decoded), for tests and copy."""
        out = []
        for i, entry in enumerate(self.entries):
            for j, text in enumerate(self._wrapped[i]):
                prefix = f"{entry.name}: " if j == 0 and entry.name else ""
                if isinstance(text, tuple):
                    out.append(prefix + (f"{text[0]}  " if text[0] else "") + text[1])
                else:
                    out.append(prefix + text)
        return out

    def cursor_style(self) -> Style:
        return self.get_component_rich_style("detail--cursor")
