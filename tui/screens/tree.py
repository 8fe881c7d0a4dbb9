"""The process tree at one process: its ancestors above (each with its other children), its children
below, everything else loaded only when a node is expanded, a chunk at a time, by a thread worker.

A host with 100,000 processes opens at once because nothing is walked that is not shown: a node
knows how many children it has (so it can say it is expandable without a query) and whether they
are loaded. Labels are `Text` built from escaped strings (tui.tree_text), never markup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from engine import lineage

from .. import tree_text
from ..safe_text import escape
from ..session import Session
from ..workers import ReportsWorkerFailures
from .base import keymap_bindings

CHUNK = 200  # children added per load (harlequin's POPULATE_CHUNK_SIZE idea)
COMMAND_WIDTH = 90


@dataclass
class ProcessItem:
    row: dict[str, Any]
    loaded: int = 0  # children added so far

    @property
    def node(self) -> int:
        return int(self.row["node"])

    @property
    def children(self) -> int:
        return int(self.row.get("children") or 0)


@dataclass
class MoreItem:
    parent: int
    offset: int
    remaining: int
    rows: list[dict[str, Any]] = field(default_factory=list)


def label(row: dict[str, Any]) -> Text:
    t, name, pid, user, cmd = tree_text.fields(row)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(t[11:] if len(t) > 11 else t, style="dim")
    text.append("  ")
    text.append(name, style="bold")
    text.append(f"  {pid}  ")
    text.append(user, style="cyan")
    marks = row.get("marks") or []
    if marks:
        text.append("  ! " + escape("; ".join(marks)), style="bold red")
    below = row.get("subtree_marks") or 0
    if below:
        text.append(f"  ({below} marked below)", style="yellow")
    note = tree_text.link_note(row)
    if note:
        text.append("  " + escape(note), style="dim italic")
    if cmd:  # last: the marks and the link note must not scroll out of sight behind it
        text.append("  " + tree_text.cut(cmd, COMMAND_WIDTH))
    return text


def info(row: dict[str, Any]) -> Text:
    """The focused process in full, for the lines under the tree."""
    text = Text()
    marks = row.get("marks") or []
    if marks:
        text.append(" ! " + escape("; ".join(marks)) + "\n", style="bold red")
    note = tree_text.link_note(row)
    if note:
        text.append(" " + escape(note) + "\n", style="italic")
    text.append(" " + escape(row.get("command_line") or row.get("image") or "", limit=400))
    return text


class ProcessTree(Tree[Any], inherit_bindings=False):
    """A Tree whose keys all come from the screen's keymap; `pending` counts loads in flight."""

    # Without colour the theme's guide colour reads as transparent and Textual hides the guides:
    # they get a plain ANSI colour instead (the NO_COLOR filter then drops it, the lines stay).
    DEFAULT_CSS = """
    ProcessTree { height: 1fr; overflow-x: hidden; }
    ProcessTree.-plain > .tree--guides, ProcessTree.-plain > .tree--guides-hover,
    ProcessTree.-plain > .tree--guides-selected { color: ansi_white; }
    """
    pending = 0

    def on_mount(self) -> None:
        if os.environ.get("NO_COLOR"):
            self.add_class("-plain")

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if not os.environ.get("NO_COLOR") or self.scroll_offset.y + y != self.cursor_line:
            return strip
        # Without colour the cursor line is shown in reverse and marked in text, as the lists are
        # (a terminal redrawing only changed cells can lose the reverse).
        segments = list(strip.apply_style(Style(reverse=True)))
        if segments and segments[0].text:
            segments[0] = Segment(">" + segments[0].text[1:], segments[0].style)
        return Strip(segments, strip.cell_length)


class ProcessTreeScreen(ReportsWorkerFailures, Screen[None]):
    BINDINGS = keymap_bindings("tree")
    DEFAULT_CSS = """
    ProcessTreeScreen #tree-title { height: 2; background: $panel; }
    ProcessTreeScreen #tree-info { height: auto; max-height: 4; background: $panel; }
    """

    def __init__(self, session: Session, focus: int) -> None:
        super().__init__()
        self.session = session
        self.focus_node = focus
        self.ready = False
        self.search_text = ""
        self.matches: list[int] = []
        self.match_index = -1
        self.host: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(" process tree: reading…", style="dim"), id="tree-title")
        tree = ProcessTree(Text("processes"), id="tree")
        tree.show_root = False
        tree.guide_depth = 3
        yield tree
        yield Static("", id="tree-info")

    @property
    def tree(self) -> ProcessTree:
        return self.query_one(ProcessTree)

    def on_mount(self) -> None:
        self.tree.focus()
        self.reveal(self.focus_node, first=True)

    # -- loading -------------------------------------------------------------------------------------
    def reveal(self, node: int, *, first: bool = False) -> None:
        self.tree.pending += 1
        self._reveal(node, first)

    @work(thread=True, group="tree-reveal", exclusive=True, exit_on_error=False)
    def _reveal(self, node: int, first: bool) -> None:
        try:
            with self.session.busy("process tree") as (cur, _job):
                chain = lineage.ancestors(cur, node)
                kids = lineage.children_of_many(cur, chain, CHUNK)
                problem = lineage.marks_problem(cur) if first else None
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"process tree failed: {exc}")
            return
        self.app.call_from_thread(self._show_chain, chain, kids, first)
        if problem:
            self.app.call_from_thread(self.notify, f"process marks file not used: {problem}", severity="warning",
                                      markup=False, timeout=10)

    def _failed(self, message: str) -> None:
        self.tree.pending = max(0, self.tree.pending - 1)
        self.ready = True
        self.query_one("#tree-title", Static).update(Text(" " + message, style="bold red"))
        self.notify(message, severity="error", markup=False)

    def _add(self, parent: TreeNode[Any], row: dict[str, Any]) -> TreeNode[Any]:
        item = ProcessItem(row)
        return parent.add(label(row), data=item, allow_expand=item.children > 0)

    def _fill(self, tnode: TreeNode[Any], rows: list[dict[str, Any]]) -> None:
        """Add a loaded chunk of children under `tnode`, and a "more" row when some are left."""
        item = tnode.data
        assert isinstance(item, ProcessItem)
        present = {c.data.node for c in tnode.children if isinstance(c.data, ProcessItem)}
        for c in list(tnode.children):
            if isinstance(c.data, MoreItem) or c.data is None:
                c.remove()
        for r in rows:
            if int(r["node"]) not in present:
                self._add(tnode, r)
        item.loaded += len(rows)
        remaining = item.children - item.loaded
        if remaining > 0:
            tnode.add_leaf(Text(f"… {remaining:,} more: Enter loads the next {min(CHUNK, remaining)}", style="dim"),
                           data=MoreItem(item.node, item.loaded, remaining))

    def _show_chain(self, chain: list[dict[str, Any]], kids: dict[int, list[dict[str, Any]]], first: bool) -> None:
        tree = self.tree
        tree.pending = max(0, tree.pending - 1)
        if not chain:
            self._failed("this process is not in the tree")
            return
        parent: TreeNode[Any] = tree.root
        target: TreeNode[Any] | None = None
        for row in chain:
            existing = next((c for c in parent.children
                             if isinstance(c.data, ProcessItem) and c.data.node == row["node"]), None)
            tnode = existing or self._add(parent, row)
            item = tnode.data
            assert isinstance(item, ProcessItem)
            if item.loaded == 0 and item.children:
                self._fill(tnode, kids.get(item.node, []))
            if row is not chain[-1] or first:
                tnode.expand()
            parent = tnode
            target = tnode
        if first:
            self.host = str(chain[-1]["host"])
            self._title(chain[-1])
            self.ready = True
            self.app.view_changed()  # type: ignore[attr-defined]
        if target is not None:
            # The lines of the nodes just added exist after the next refresh.
            self.call_after_refresh(self._point_at, target)

    def _point_at(self, target: TreeNode[Any]) -> None:
        self.tree.move_cursor(target)
        self.tree.scroll_to_node(target, animate=False)

    def _title(self, row: dict[str, Any]) -> None:
        keys = getattr(self.app, "keymap", None)
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(" process tree", style="bold")
        title.append(f" of {escape(row['host'])} at {escape(tree_text.image_name(row['image']))} {row['pid']}")
        if keys is not None:
            hints = " · ".join(f"{keys.display('tree', a)} {what}" for a, what in (
                ("open", "process"), ("expand", "expand"), ("ancestry", "ancestry"), ("events", "its events"),
                ("subtree_events", "subtree's events"), ("help", "help")))
            title.append("\n " + hints, style="dim")
        self.query_one("#tree-title", Static).update(title)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Any]) -> None:
        # The whole of the focused process under the tree: at 80 columns its label is cut.
        item = event.node.data
        if isinstance(item, ProcessItem):
            self.query_one("#tree-info", Static).update(info(item.row))

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        item = event.node.data
        if isinstance(item, ProcessItem) and item.children and item.loaded == 0:
            self._load_children(event.node, item, 0)

    def _load_children(self, tnode: TreeNode[Any], item: ProcessItem, offset: int) -> None:
        self.tree.pending += 1
        if offset == 0:
            tnode.add_leaf(Text("loading…", style="dim"))
        self._children_worker(tnode, item.node, offset)

    @work(thread=True, group="tree-children", exit_on_error=False)
    def _children_worker(self, tnode: TreeNode[Any], node: int, offset: int) -> None:
        try:
            with self.session.busy("process children") as (cur, _job):
                rows = lineage.children(cur, node, offset, CHUNK)
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"loading children failed: {exc}")
            return
        self.app.call_from_thread(self._children_loaded, tnode, rows)

    def _children_loaded(self, tnode: TreeNode[Any], rows: list[dict[str, Any]]) -> None:
        self.tree.pending = max(0, self.tree.pending - 1)
        self._fill(tnode, rows)

    # -- the focused process ---------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        tnode = self.tree.cursor_node
        if tnode is not None and isinstance(tnode.data, ProcessItem):
            return tnode.data.row
        return None

    def action_cursor_down(self) -> None:
        self.tree.action_cursor_down()

    def action_cursor_up(self) -> None:
        self.tree.action_cursor_up()

    def action_page_down(self) -> None:
        self.tree.action_page_down()

    def action_page_up(self) -> None:
        self.tree.action_page_up()

    def action_first(self) -> None:
        self.tree.action_scroll_home()
        self.tree.cursor_line = 0

    def action_last(self) -> None:
        self.tree.action_scroll_end()
        self.tree.cursor_line = max(0, self.tree.last_line)

    def action_expand(self) -> None:
        tnode = self.tree.cursor_node
        if tnode is None:
            return
        if isinstance(tnode.data, MoreItem):
            self._more(tnode)
        elif tnode.allow_expand:
            tnode.toggle()

    def action_collapse(self) -> None:
        tnode = self.tree.cursor_node
        if tnode is None:
            return
        if tnode.is_expanded:
            tnode.collapse()
        elif tnode.parent is not None and tnode.parent is not self.tree.root:
            self.tree.move_cursor(tnode.parent)

    def _more(self, tnode: TreeNode[Any]) -> None:
        more = tnode.data
        parent = tnode.parent
        if not isinstance(more, MoreItem) or parent is None or not isinstance(parent.data, ProcessItem):
            return
        tnode.set_label(Text("loading…", style="dim"))
        self.tree.pending += 1
        self._children_worker(parent, more.parent, parent.data.loaded)

    def action_open(self) -> None:
        tnode = self.tree.cursor_node
        if tnode is not None and isinstance(tnode.data, MoreItem):
            self._more(tnode)
            return
        row = self.current()
        if row is not None:
            from .process import ProcessScreen

            self.app.push_screen(ProcessScreen(self.session, int(row["node"])))

    def action_ancestry(self) -> None:
        row = self.current()
        if row is not None:
            self._ancestry(int(row["node"]))

    @work(thread=True, group="tree-ancestry", exclusive=True, exit_on_error=False)
    def _ancestry(self, node: int) -> None:
        try:
            with self.session.busy("ancestry") as (cur, _job):
                text = lineage.ancestry_line(cur, node)
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"ancestry failed: {exc}")
            return
        self.app.call_from_thread(self.query_one("#tree-info", Static).update, Text(" " + escape(text)))

    def action_events(self) -> None:
        row = self.current()
        if row is not None:
            show_process_events(self.app, row, subtree=False)

    def action_subtree_events(self) -> None:
        row = self.current()
        if row is not None:
            show_process_events(self.app, row, subtree=True)

    def action_session(self) -> None:
        row = self.current()
        if row is not None:
            open_session(self.app, row)

    # -- search: images and command lines of the tree's host ---------------------------------------
    def action_search(self) -> None:
        from .prompt import PromptScreen

        self.app.push_screen(PromptScreen("search processes (image or command line)", placeholder="rundll32"),
                             self._search)

    def _search(self, text: str | None) -> None:
        if not text or self.host is None:
            return
        self.search_text = text
        self._search_worker(self.host, text)

    @work(thread=True, group="tree-search", exclusive=True, exit_on_error=False)
    def _search_worker(self, host: str, text: str) -> None:
        try:
            with self.session.busy("searching processes") as (cur, _job):
                found = lineage.search(cur, host, text)
        except Exception as exc:
            self.app.call_from_thread(self._failed, f"search failed: {exc}")
            return
        self.app.call_from_thread(self._found, found)

    def _found(self, found: list[int]) -> None:
        self.matches = found
        self.match_index = -1
        if not found:
            self.notify(f"no process matches {self.search_text!r}", markup=False)
            return
        self.action_next_match()

    def action_next_match(self) -> None:
        self._step(1)

    def action_previous_match(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        if not self.matches:
            return
        self.match_index = (self.match_index + delta) % len(self.matches)
        self.notify(f"match {self.match_index + 1} of {len(self.matches)}", markup=False, timeout=2)
        self.reveal(self.matches[self.match_index])

    def action_help(self) -> None:
        from .help import HelpScreen

        self.app.push_screen(HelpScreen(self.app.keymap))  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()


def show_process_events(app: Any, row: dict[str, Any], *, subtree: bool) -> None:
    key = lineage.key_of(row)
    name = tree_text.image_name(row.get("image"))
    term = f"tree:{key}" if subtree else f"process:{key}"
    app.show_events(term, f"{'subtree of ' if subtree else ''}{name} {row.get('pid')}")


def open_session(app: Any, row: dict[str, Any]) -> None:
    """The sessions view at the process's logon session (looked up off the UI thread)."""
    from engine import sessions

    if not row.get("logon_id"):
        app.notify("this process names no logon session", markup=False)
        return
    key = sessions.SessionKey(str(row["host"]), int(row["boot"]), int(row["logon_id"]))

    def find() -> None:
        try:
            with app.session.cursor() as cur:
                found = sessions.get(cur, key)
        except Exception as exc:
            app.call_from_thread(app.notify, f"session lookup failed: {exc}", severity="error", markup=False)
            return
        if found is None:
            app.call_from_thread(app.notify, f"no logon session {key.text()} in the case (its logon is not in "
                                 "the log)", markup=False)
        else:
            app.call_from_thread(app.show_sessions_at, key)

    app.run_worker(find, thread=True, group="process-session", exit_on_error=False)
