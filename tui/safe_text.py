"""Event text is data: never markup, never terminal control.

Everything the TUI shows from a case goes through here. Values become plain strings with control
characters made visible (``\\x1b`` → ``␛``, ``\\r`` → ``\\r``, other C0/C1 → ``\\xNN``, bidi overrides
→ ``\\u202e``), are cut for display only (storage keeps every byte), and are wrapped in
``rich.text.Text`` built from the plain string (never ``Text.from_markup``), so ``[bold red]`` is
shown as the nine characters it is.
"""

from __future__ import annotations

import re
from typing import Any

from rich.style import Style
from rich.text import Text

ELLIPSIS = "…"
ESC_GLYPH = "␛"
# Longest value shown in the detail pane before "… (N chars)"; the timeline cuts to the cell width.
DETAIL_LIMIT = 4000
# Longest value escaped for a one-line cell: enough for any terminal width.
CELL_LIMIT = 512

# C0 (except nothing: even TAB and LF are escaped on one line), DEL, C1, and the Unicode
# controls that reorder or hide text (bidi overrides/isolates, line/paragraph separators).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_MULTILINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\x1b": ESC_GLYPH}


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def to_str(value: Any) -> str:
    """Any column value as text (None → empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def escape(value: Any, limit: int | None = CELL_LIMIT) -> str:
    """One line of plain text with every control character visible, cut at `limit` characters."""
    text = to_str(value)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    text = _UNSAFE.sub(_escape_char, text)
    return text + ELLIPSIS if cut else text


# What JSON leaves raw but a terminal acts on: C1 controls (U+009B is a CSI on its own), bidi and
# line-separator characters. Written as \\u escapes the JSON stays equal, and `cat` stays safe.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def json_safe(text: str) -> str:
    """JSON text with the characters a terminal would act on escaped (same JSON value)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def escape_lines(value: Any, limit: int | None = DETAIL_LIMIT, tab: str = "    ") -> list[str]:
    """Multi-line plain text for the detail pane: CRLF/LF break lines, a lone CR stays visible."""
    text = to_str(value)
    total = len(text)
    cut = limit is not None and total > limit
    if cut:
        text = text[:limit]
    text = text.replace("\r\n", "\n").replace("\t", tab)
    text = _UNSAFE_MULTILINE.sub(_escape_char, text)
    lines = text.split("\n")
    if cut:
        lines[-1] += f"{ELLIPSIS} ({total:,} characters; r shows the raw event)"
    return lines


def escape_line(text: str, tab: str = "    ") -> str:
    """One piece of a line (no line break in it) escaped exactly as `escape_lines` escapes it; the
    detail pane escapes each visible window of a long value with it, never the whole value."""
    return _UNSAFE_MULTILINE.sub(_escape_char, text.replace("\t", tab))


def fit(text: str, width: int) -> str:
    """Cut already-escaped text to `width` cells with an ellipsis, padding to exactly `width`."""
    from rich.cells import cell_len, set_cell_size

    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + ELLIPSIS


def plain(value: Any, style: Style | str | None = None, limit: int | None = CELL_LIMIT) -> Text:
    """A rich Text of the escaped value; never parsed as markup."""
    return Text(escape(value, limit), style=style or "", no_wrap=True, end="")


def join(*parts: tuple[str, Style | str | None] | str) -> Text:
    """Build a Text from plain pieces (already escaped when they come from a case)."""
    out = Text(no_wrap=True, end="")
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            text, style = part
            out.append(text, style=style or "")
    return out
