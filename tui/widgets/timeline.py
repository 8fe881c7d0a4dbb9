"""The timeline: a line-API scroller over any number of events.

The virtual height is the row count of the view (no cap). Rows come from a cache of 256-row
blocks; a missing block shows a dim placeholder while a thread worker (its own DuckDB cursor)
fetches it and posts `BlockLoaded`. A page above and two below the viewport are prefetched. Each
view change bumps `generation`, so a block that arrives for an older filter is dropped. The UI
thread never waits on DuckDB.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from engine import views

from ..safe_text import fit
from ..session import Session
from ..workers import ReportsWorkerFailures
from .columns import DEFAULT_COLUMNS, Placed, fit_cell, layout, local_offset_label, own_columns
from .rows import EventRows, RowSource

BLOCK = 256
MAX_BLOCKS = 24  # ~6k rows (a row is ~5 KB of Python objects)
MAX_INFLIGHT = 3
MARK_GLYPH = "●"
TAG_GLYPH = "◆"


class Timeline(ReportsWorkerFailures, ScrollView, can_focus=True, inherit_bindings=False):
    """Rows of the current view; the screen owns the keys and calls the movement methods."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--cursor",
        "timeline--cell",
        "timeline--placeholder",
        "timeline--match",
        "timeline--mark",
    }

    DEFAULT_CSS = """
    Timeline {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        height: 1fr;
    }
    Timeline > .timeline--cursor { text-style: bold; background: $accent 30%; }
    Timeline > .timeline--cell { text-style: bold reverse; }
    Timeline > .timeline--placeholder { text-style: dim; color: $text-muted; }
    Timeline > .timeline--match { text-style: underline bold; color: $warning; }
    Timeline > .timeline--mark { color: $warning; text-style: bold; }
    """

    class BlockLoaded(Message):
        def __init__(self, generation: int, block: int, rows: list[dict[str, Any]] | None,
                     error: str | None) -> None:
            super().__init__()
            self.generation = generation
            self.block = block
            self.rows = rows
            self.error = error

    class CursorMoved(Message):
        """The cursor is on another row, or its row has just been loaded."""

        def __init__(self, index: int, row: dict[str, Any] | None) -> None:
            super().__init__()
            self.index = index
            self.row = row

    class LayoutChanged(Message):
        """Columns, their widths, the focused column or the time zone changed."""

    local_time: var[bool] = var(False)

    def __init__(self, session: Session, *, source: RowSource | None = None, columns: list[str] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        # Events unless told otherwise: the sessions view pages through sessions with the same widget.
        self.source: RowSource = source if source is not None else EventRows(session.marks)
        self.view: views.View | None = None
        self.generation = 0
        self.cursor = 0
        self.focus_column = 0
        self.columns: list[str] = list(columns or DEFAULT_COLUMNS)
        self.placed: list[Placed] = []
        self.prefs: dict[str, int] = {}  # preferred widths the data decides (layout())
        self.highlight_terms: list[str] = []
        self._blocks: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._pending: set[int] = set()
        self._inflight = 0
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(4096)
        self._dispatch_scheduled = False
        self._marks_version = 0
        self.errors = 0

    # -- view ------------------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return 0 if self.view is None else self.view.count

    def set_view(self, view: views.View, cursor: int = 0, *, columns: list[str] | None = None,
                 blocks: dict[int, list[dict[str, Any]]] | None = None) -> None:
        """Show another view; the old generation's blocks and in-flight fetches are forgotten.

        `blocks` are rows already fetched for this view (by the worker that resolved it)."""
        self._replace_view(view, blocks)
        if columns is not None and columns != self.columns:
            self.columns = list(columns)
            self.focus_column = min(self.focus_column, max(0, len(self.columns) - 1))
            self._relayout()
        self.virtual_size = Size(max(1, self.size.width), view.count)
        self.cursor = max(0, min(cursor, view.count - 1))
        self._scroll_to_cursor(center=True)
        self.refresh()
        self._schedule_dispatch()
        self._announce()

    def _replace_view(self, view: views.View, blocks: dict[int, list[dict[str, Any]]] | None) -> None:
        self.generation += 1
        self.view = view
        self._blocks.clear()
        self._pending.clear()
        self._strips.clear()
        if blocks:
            self._blocks.update(blocks)

    def anchor(self) -> tuple[int | None, int, int]:
        """(pos of the cursor's event or None when on the first row, its row on screen, height).
        Read by the worker growing a full-text view from its thread: a stale answer only means
        the rows it prefetched are not the ones shown, and they are fetched as usual."""
        row = self.current_row() if self.cursor else None
        pos = None if row is None or row.get("pos") is None else int(row["pos"])
        return pos, self.cursor - int(self.scroll_offset.y), max(1, self.size.height)

    @staticmethod
    def grown_placement(view: views.View, anchor: tuple[int | None, int, int]) -> tuple[int, int]:
        """(cursor, top row) of a grown view: the cursor stays on its event at the same place on
        screen; on the first row it stays there, so the earliest matches found so far stay in sight."""
        pos, on_screen, height = anchor
        index = 0 if pos is None else view.index_of_pos(pos)
        index = max(0, min(index, view.count - 1))
        top = max(0, min(max(0, view.count - height), index - on_screen))
        return index, top

    @staticmethod
    def blocks_from(top: int, count: int, height: int) -> list[int]:
        last = min(count, top + height) - 1
        return list(range(top // BLOCK, last // BLOCK + 1)) if last >= top else []

    def update_view(self, view: views.View, anchor: tuple[int | None, int, int],
                    blocks: dict[int, list[dict[str, Any]]] | None = None) -> None:
        """The same filter with more matches found (a full-text filter still searching); `blocks`
        are the rows the worker prefetched for the placement `anchor` gives."""
        index, top = self.grown_placement(view, anchor)
        self._replace_view(view, blocks)
        self.virtual_size = Size(max(1, self.size.width), view.count)
        self.cursor = index
        self.scroll_to(y=top, animate=False)
        self.refresh()
        self._schedule_dispatch()
        self._announce()

    @staticmethod
    def blocks_for(index: int, count: int, height: int) -> list[int]:
        """The blocks on screen once `index` is the cursor of a new view (placed as `set_view` does)."""
        if count <= 0:
            return []
        height = max(1, height)
        top = max(0, min(max(0, count - height), index - height // 3))
        last = min(count, top + height) - 1
        return list(range(top // BLOCK, last // BLOCK + 1))

    def loaded(self) -> bool:
        """Every visible row is on screen (no placeholder) — what tests and the bench wait for."""
        if self.view is None:
            return False
        top = int(self.scroll_offset.y)
        last = min(self.count, top + max(1, self.size.height)) - 1
        if last < top:
            return True
        return all(b in self._blocks for b in range(top // BLOCK, last // BLOCK + 1))

    def row_at(self, index: int) -> dict[str, Any] | None:
        block = self._blocks.get(index // BLOCK)
        if block is None:
            return None
        offset = index % BLOCK
        return block[offset] if offset < len(block) else None

    def current_row(self) -> dict[str, Any] | None:
        return self.row_at(self.cursor) if self.count else None

    def marks_changed(self) -> None:
        self._marks_version += 1
        self.refresh()

    # -- columns ------------------------------------------------------------------------------------------
    def set_columns(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self.focus_column = min(self.focus_column, max(0, len(columns) - 1))
        self._relayout()
        self.refresh()

    def relayout(self) -> None:
        """Lay the columns out again (their preferred widths changed)."""
        self._relayout()
        self.refresh()

    def _relayout(self) -> None:
        # A view's own columns (a preset's) outrank the generic ones when the width runs short.
        self.placed = layout(self.columns, self.content_width or 80, self.prefs, own_columns(self.columns))
        self.focus_column = min(self.focus_column, max(0, len(self.placed) - 1))
        self._strips.clear()
        self.post_message(self.LayoutChanged())

    def focused_column_name(self) -> str | None:
        if not self.placed:
            return None
        return self.placed[min(self.focus_column, len(self.placed) - 1)].name

    def move_column(self, delta: int) -> None:
        if not self.placed:
            return
        self.focus_column = max(0, min(len(self.placed) - 1, self.focus_column + delta))
        self.refresh()
        self.post_message(self.LayoutChanged())

    def watch_local_time(self) -> None:
        self._strips.clear()
        self.refresh()
        self.post_message(self.LayoutChanged())

    def time_title(self) -> str:
        return f"time ({local_offset_label()})" if self.local_time else "time (UTC)"

    def on_resize(self) -> None:
        self._relayout()
        if self.view is not None:
            self.virtual_size = Size(max(1, self.size.width), self.view.count)
            self._scroll_to_cursor()
        self._schedule_dispatch()

    # -- movement -----------------------------------------------------------------------------------------
    def move_to(self, index: int, *, center: bool = False) -> None:
        if not self.count:
            return
        index = max(0, min(self.count - 1, index))
        if index != self.cursor:
            self.cursor = index
            self.refresh()
        self._scroll_to_cursor(center=center)
        self._announce()

    def move_by(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def page(self, pages: int) -> None:
        """Move a page, keeping the cursor at the same place on screen."""
        if not self.count:
            return
        height = max(1, self.size.height)
        offset_in_view = self.cursor - int(self.scroll_offset.y)
        target = max(0, min(self.count - 1, self.cursor + pages * height))
        top = max(0, min(max(0, self.count - height), int(self.scroll_offset.y) + pages * height))
        self.cursor = target
        if not (top <= target < top + height):
            top = max(0, target - offset_in_view)
        self.scroll_to(y=top, animate=False)
        self.refresh()
        self._schedule_dispatch()
        self._announce()

    def _scroll_to_cursor(self, *, center: bool = False) -> None:
        height = max(1, self.size.height)
        top = int(self.scroll_offset.y)
        if center:
            new_top = self.cursor - height // 3
        elif self.cursor < top:
            new_top = self.cursor
        elif self.cursor >= top + height:
            new_top = self.cursor - height + 1
        else:
            new_top = top
        new_top = max(0, min(max(0, self.count - height), new_top))
        if new_top != top:
            self.scroll_to(y=new_top, animate=False)
        self._schedule_dispatch()

    def _announce(self) -> None:
        self.post_message(self.CursorMoved(self.cursor, self.current_row()))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._schedule_dispatch()

    # -- fetching -----------------------------------------------------------------------------------------
    def _schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self.call_later(self._dispatch)

    def _wanted_blocks(self) -> list[int]:
        """Visible blocks first, then a page above and two below, nearest first."""
        if not self.count:
            return []
        height = max(1, self.size.height)
        top = int(self.scroll_offset.y)
        last_block = (self.count - 1) // BLOCK
        visible = list(range(top // BLOCK, min(last_block, (top + height - 1) // BLOCK) + 1))
        lo = max(0, top - height) // BLOCK
        hi = min(last_block, (top + 3 * height) // BLOCK)
        around = sorted((b for b in range(lo, hi + 1) if b not in visible),
                        key=lambda b: abs(b * BLOCK - top))
        return visible + around

    def _dispatch(self) -> None:
        """Fetch what is on screen first; prefetch around it only once that is loaded."""
        self._dispatch_scheduled = False
        if self.view is None:
            return
        wanted = self._wanted_blocks()
        height = max(1, self.size.height)
        top = int(self.scroll_offset.y)
        visible = range(top // BLOCK, (min(self.count, top + height) - 1) // BLOCK + 1)
        missing_visible = [b for b in visible if b not in self._blocks]
        if missing_visible:
            wanted = missing_visible
        for block in wanted:
            if self._inflight >= MAX_INFLIGHT:
                break
            if block in self._blocks or block in self._pending:
                continue
            self._pending.add(block)
            self._inflight += 1
            self._fetch(self.generation, self.view, block)

    @work(thread=True, group="timeline-blocks", exit_on_error=False)
    def _fetch(self, generation: int, view: views.View, block: int) -> None:
        rows: list[dict[str, Any]] | None = None
        error: str | None = None
        if generation == self.generation and self._still_wanted(block):
            try:
                with self.session.cursor() as cur:
                    rows = self.source.window(cur, view, block * BLOCK, BLOCK)
            except Exception as exc:  # an interrupted or failed query: show it, retry on next scroll
                error = str(exc)
        self.post_message(self.BlockLoaded(generation, block, rows, error))

    def _still_wanted(self, block: int) -> bool:
        height = max(1, self.size.height)
        top = int(self.scroll_offset.y)
        return (top - 2 * height) // BLOCK <= block <= (top + 4 * height) // BLOCK

    def on_timeline_block_loaded(self, message: BlockLoaded) -> None:
        message.stop()
        self._inflight = max(0, self._inflight - 1)
        if message.generation == self.generation:
            self._pending.discard(message.block)
            if message.rows is not None:
                self._blocks[message.block] = message.rows
                self._evict()
                self.refresh()
                if message.block == self.cursor // BLOCK:
                    self._announce()
            elif message.error:
                # Retry later rather than in a tight loop (a closed or busy case keeps failing).
                self.errors += 1
                self.log.warning(f"block {message.block}: {message.error}")
                self.set_timer(0.5, self._schedule_dispatch)
                return
        self._schedule_dispatch()

    def _evict(self) -> None:
        if len(self._blocks) <= MAX_BLOCKS:
            return
        keep = set(self._wanted_blocks())
        for block in list(self._blocks):
            if len(self._blocks) <= MAX_BLOCKS:
                break
            if block not in keep:
                del self._blocks[block]

    def pending(self) -> bool:
        return bool(self._pending) or self._inflight > 0

    # -- rendering -----------------------------------------------------------------------------------------
    @property
    def content_width(self) -> int:
        """Columns for rows: the scrollbar's column is always reserved (scrollbar-gutter: stable)."""
        return self.scrollable_content_region.width

    def render_line(self, y: int) -> Strip:
        width = self.content_width
        index = int(self.scroll_offset.y) + y
        base = self.rich_style
        if self.view is None or index >= self.count or width <= 0:
            return Strip.blank(width, base)
        row = self.row_at(index)
        is_cursor = index == self.cursor
        if row is None:
            self._schedule_dispatch()
            return self._placeholder(index, width, is_cursor)
        # None: not marked; "": marked without a tag; text: tagged.
        mark = self.source.mark_of(row)
        key = (self.generation, index, is_cursor, self.focus_column if is_cursor else -1, width,
               self.local_time, mark, tuple(self.highlight_terms), self._marks_version)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._render_row(row, width, is_cursor, mark)
            self._strips[key] = strip
        return strip

    def _placeholder(self, index: int, width: int, is_cursor: bool) -> Strip:
        style = self.rich_style + self.get_component_rich_style("timeline--placeholder")
        if is_cursor:
            style += self.get_component_rich_style("timeline--cursor")
        text = fit("  ⋯", width)
        return Strip([Segment(text, style)], width)

    def _render_row(self, row: dict[str, Any], width: int, is_cursor: bool, mark: Any) -> Strip:
        base = self.rich_style
        row_style = base + self.get_component_rich_style("timeline--cursor") if is_cursor else base
        cell_style = row_style + self.get_component_rich_style("timeline--cell")
        match_style = self.get_component_rich_style("timeline--match")
        segments: list[Segment] = []
        if mark is None:
            segments.append(Segment("  ", row_style))
        else:
            glyph = TAG_GLYPH if mark else MARK_GLYPH
            segments.append(Segment(glyph, row_style + self.get_component_rich_style("timeline--mark")))
            segments.append(Segment(" ", row_style))
        x = 2
        for i, col in enumerate(self.placed):
            if col.x > x:
                segments.append(Segment(" " * (col.x - x), row_style))
                x = col.x
            text = fit_cell(self.source.cell(row, col.name, self.local_time), col.name, col.width)
            style = cell_style if (is_cursor and i == self.focus_column) else row_style
            segments.extend(self._highlight(text, style, match_style))
            x += col.width
        if x < width:
            segments.append(Segment(" " * (width - x), row_style))
        return Strip(segments).crop_extend(0, width, row_style)

    def _highlight(self, text: str, style: Style, match_style: Style) -> list[Segment]:
        if not self.highlight_terms or not text.strip():
            return [Segment(text, style)]
        lowered = text.lower()
        spans: list[tuple[int, int]] = []
        for term in self.highlight_terms:
            start = lowered.find(term)
            while term and start != -1:
                spans.append((start, start + len(term)))
                start = lowered.find(term, start + len(term))
        if not spans:
            return [Segment(text, style)]
        spans.sort()
        out: list[Segment] = []
        pos = 0
        for start, end in spans:
            if end <= pos:
                continue
            start = max(start, pos)
            if start > pos:
                out.append(Segment(text[pos:start], style))
            out.append(Segment(text[start:end], style + match_style))
            pos = end
        if pos < len(text):
            out.append(Segment(text[pos:], style))
        return out


class TimelineHeader(Widget):
    """Column titles over the timeline; the focused column is reversed."""

    DEFAULT_CSS = """
    TimelineHeader { height: 1; background: $panel; color: $text; text-style: bold; }
    """

    def __init__(self, timeline: Timeline, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.timeline = timeline

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        segments: list[Segment] = [Segment("  ", base)]
        x = 2
        for i, col in enumerate(self.timeline.placed):
            if col.x > x:
                segments.append(Segment(" " * (col.x - x), base))
                x = col.x
            title = self.timeline.time_title() if col.name == "time" else col.title
            style = base + Style(reverse=True) if i == self.timeline.focus_column else base
            segments.append(Segment(fit(title, col.width), style))
            x += col.width
        return Strip(segments).crop_extend(0, width, base)
