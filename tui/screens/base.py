"""Bindings generated from the keymap, and a list widget whose keys all come from it."""

from __future__ import annotations

import os
from functools import cache

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.strip import Strip
from textual.widgets import OptionList

from ..keymap import ACTIONS, Keymap, load_keymap


@cache
def default_keymap() -> Keymap:
    return load_keymap(user_config=False)


def keymap_bindings(screen: str) -> list[Binding]:
    """One `Binding(id="screen.action")` per action, with the default keys.

    The App's keymap (`App.set_keymap(Keymap.textual())`) then moves each to the user's keys.
    """
    km = default_keymap()
    out = []
    for action, description in ACTIONS[screen].items():
        keys = km.keys(screen, action) or ["ctrl+shift+f24"]
        out.append(Binding(",".join(keys), action, description, show=False, id=f"{screen}.{action}"))
    return out


class KeyList(OptionList, inherit_bindings=False):
    """An OptionList without its own keys: the screen's keymap drives it."""

    DEFAULT_CSS = """
    KeyList, KeyList:focus { height: 1fr; max-height: 100%; border: none; padding: 0; }
    """

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if not os.environ.get("NO_COLOR"):
            return strip
        # Without colour the highlighted option kept only bold, which its neighbours' bold counts
        # share: it is shown in reverse, as the timeline's cursor cell is.
        try:
            index, _ = self._lines[self.scroll_offset.y + y]
        except IndexError:
            return strip
        if index != self.highlighted:
            return strip
        # And marked in text: a terminal redrawing only the changed cells kept the bold but lost
        # the reverse (seen in tmux after moving the highlight).
        segments = list(strip.apply_style(Style(reverse=True)))
        if segments and segments[0].text.startswith(" "):
            segments[0] = Segment(">" + segments[0].text[1:], segments[0].style)
        return Strip(segments, strip.cell_length)


class KeyListNavigation:
    """j/k, g/G of a screen that shows one KeyList: the screen's keymap moves the list."""

    def _key_list(self) -> KeyList:
        return self.query_one(KeyList)  # type: ignore[attr-defined, no-any-return]

    def action_cursor_down(self) -> None:
        self._key_list().action_cursor_down()

    def action_cursor_up(self) -> None:
        self._key_list().action_cursor_up()

    def action_first(self) -> None:
        self._key_list().action_first()

    def action_last(self) -> None:
        self._key_list().action_last()
