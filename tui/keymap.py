"""Keymaps: keymaps/default.toml, then the user's keymap, then --keymap FILE, validated strictly.

A keymap file has one table per screen ([timeline], [detail], [histogram], [frequency], [filters],
[help]) mapping actions to keys, and [presets.NAME] tables (key, title, filter, columns) for the
event-ID hotkeys. A later file replaces an action's keys and overrides or adds presets; a key it
takes is removed from whatever an earlier file bound to it. Anything unknown (a section, an
action, a key name, a preset field, a column) is an error that names the file, the line, the bad
word and the closest valid one.

The result feeds Textual: every action is a `Binding(id="screen.action")`, and `Keymap.textual()`
is the mapping given to `App.set_keymap`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.keys import Keys, _character_to_key, format_key

import keymaps
from engine.filters import Compiler, FilterError

DEFAULT_PATH = Path(keymaps.__file__).resolve().parent / "default.toml"

# screen → action → what it does (the help screen shows these).
ACTIONS: dict[str, dict[str, str]] = {
    "timeline": {
        "cursor_down": "next event",
        "cursor_up": "previous event",
        "page_down": "page down",
        "page_up": "page up",
        "first": "first event",
        "last": "last event",
        "column_left": "focus the column to the left",
        "column_right": "focus the column to the right",
        "filter": "filter prompt (history with ↑/↓, live count)",
        "keep_value": "keep only the focused cell's value",
        "exclude_value": "exclude the focused cell's value",
        "drop_filter": "drop the last filter",
        "toggle_filters": "turn all filters off / on",
        "list_filters": "list active filters (remove any)",
        "search": "search: highlight and jump, no filtering",
        "next_match": "next search match",
        "previous_match": "previous search match",
        "goto_time": "go to a time",
        "context": "context: same host, ±5 minutes, all channels",
        "context_narrower": "narrower context window",
        "context_wider": "wider context window",
        "back": "back to the previous view (at the first: quit, asking once after a step back; Ctrl-Q quits)",
        "histogram": "histogram of the view over time",
        "frequency": "frequency of the focused column's values",
        "mark": "mark / unmark the event",
        "next_mark": "next marked event",
        "previous_mark": "previous marked event",
        "tag": "tag the event with free text",
        "export": "export the view or the marked events",
        "detail": "open the event",
        "copy_value": "copy the focused value (OSC 52)",
        "toggle_local_time": "UTC / local time",
        "toggle_side_pane": "show / hide the side detail pane (wide terminals)",
        "help": "this help",
        "cancel": "cancel background work / clear the search",
        "command_palette": "command palette",
        "save_filter": "save the current filter by name",
        "sessions": "logon sessions: who logged on where, how, with which privileges",
        "failed_logons": "failed logons: brute force, spraying, lockouts",
        "tree": "process tree at the process this event names",
        "findings": "findings: where to look first, worst first",
    },
    "sessions": {
        "cursor_down": "next session",
        "cursor_up": "previous session",
        "page_down": "page down",
        "page_up": "page up",
        "first": "first session",
        "last": "last session",
        "column_left": "focus the column to the left",
        "column_right": "focus the column to the right",
        "filter": "filter sessions (user: host: type: ip: privileged:yes flag:ntlm after: …)",
        "keep_value": "keep only the focused cell's value",
        "exclude_value": "exclude the focused cell's value",
        "drop_filter": "drop the last filter",
        "search": "search: jump to matching sessions, no filtering",
        "next_match": "next search match",
        "previous_match": "previous search match",
        "frequency": "frequency of the focused column's values",
        "mark": "mark / unmark the session",
        "export": "export the sessions of the view (jsonl, csv)",
        "open": "every event of the session in the timeline",
        "failed_logons": "failed logons: brute force, spraying, lockouts",
        "tree": "process tree at the session's first process",
        "back": "back to the timeline (or drop the last filter)",
        "help": "this help",
        "cancel": "cancel background work / clear the search",
    },
    "findings": {
        "cursor_down": "next finding",
        "cursor_up": "previous finding",
        "page_down": "page down",
        "page_up": "page up",
        "first": "first finding",
        "last": "last finding",
        "column_left": "focus the column to the left",
        "column_right": "focus the column to the right",
        "filter": "filter findings (rule: host: user: severity: attack: after: words)",
        "keep_value": "keep only the focused cell's value",
        "exclude_value": "exclude the focused cell's value",
        "drop_filter": "drop the last filter",
        "search": "search: jump to matching findings, no filtering",
        "next_match": "next search match",
        "previous_match": "previous search match",
        "open": "the finding's events in the timeline",
        "session": "the logon session of the finding",
        "tree": "process tree at the finding's process",
        "allow": "allowlist a value of the finding for its rule (saved to your rules directory)",
        "coverage": "coverage: what each host's logs can and cannot show",
        "back": "back to the timeline",
        "help": "this help",
        "cancel": "cancel background work / clear the search",
    },
    "logons": {
        "cursor_down": "next verdict or group",
        "cursor_up": "previous verdict or group",
        "first": "first row",
        "last": "last row",
        "open": "the events behind it in the timeline",
        "filter": "filter the rows (user: ip: host: verdict: kind: count:>N after: before: words)",
        "drop_filter": "drop the filter",
        "frequency": "frequency of failures by account, source, host or verdict",
        "mark": "mark / unmark the events behind the row (in the timeline's marks)",
        "search": "search the rows' text (accounts, sources, hosts, reasons)",
        "next_match": "next search match",
        "previous_match": "previous search match",
        "export": "export the verdicts and groups (jsonl)",
        "help": "this help",
        "back": "back",
    },
    "tree": {
        "cursor_down": "next process",
        "cursor_up": "previous process",
        "page_down": "page down",
        "page_up": "page up",
        "first": "first line",
        "last": "last line",
        "expand": "expand / collapse (children load as needed); load more",
        "collapse": "collapse, or go to the parent",
        "open": "the process: command line, user, integrity, hashes, parent link, events",
        "ancestry": "the ancestry as one line",
        "session": "its logon session",
        "events": "the timeline filtered to this process",
        "subtree_events": "the timeline filtered to this process and everything below it",
        "search": "search images and command lines of the host",
        "next_match": "next match",
        "previous_match": "previous match",
        "help": "this help",
        "back": "back",
    },
    "process": {
        "scroll_down": "scroll down",
        "scroll_up": "scroll up",
        "events": "the timeline filtered to this process",
        "subtree_events": "the timeline filtered to this process and everything below it",
        "session": "its logon session",
        "help": "this help",
        "back": "back",
    },
    "detail": {
        "cursor_down": "next field",
        "cursor_up": "previous field",
        "page_down": "page down",
        "page_up": "page up",
        "first": "first field",
        "last": "last field",
        "toggle_raw": "raw original document / fields",
        "copy_value": "copy the focused value (OSC 52)",
        "next_event": "next event of the view",
        "previous_event": "previous event of the view",
        "tree": "process tree at the process this event names",
        "back": "back to the timeline",
    },
    "histogram": {
        "cursor_down": "next bucket",
        "cursor_up": "previous bucket",
        "first": "first bucket",
        "last": "last bucket",
        "select": "narrow the timeline to the bucket",
        "back": "back to the timeline",
    },
    "frequency": {
        "cursor_down": "next value",
        "cursor_up": "previous value",
        "first": "first value",
        "last": "last value",
        "select": "keep only this value",
        "exclude": "exclude this value",
        "toggle_order": "most common / rarest first",
        "back": "back to the timeline",
    },
    "filters": {
        "cursor_down": "next filter",
        "cursor_up": "previous filter",
        "remove": "remove the filter",
        "back": "back to the timeline",
    },
    "help": {
        "cursor_down": "scroll down",
        "cursor_up": "scroll up",
        "page_down": "page down",
        "page_up": "page up",
        "back": "close the help",
    },
}
PRESET_FIELDS = ("key", "title", "filter", "columns")
# Presets share the timeline's keys.
PRESET_SECTION = "timeline"

_MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")
_NAMED_KEYS = sorted(
    {k.value for k in Keys if "+" not in k.value}
    | {_character_to_key(chr(c)) for c in range(33, 127)}
    | {"space", "enter", "tab", "backspace", "escape", "delete", "insert"}
    | {f"f{n}" for n in range(1, 25)}
)
_VALID_KEY_NAMES = frozenset(_NAMED_KEYS)
# Names people write for keys (and that Textual displays), accepted as the key they mean.
_KEY_ALIASES = {"esc": "escape", "return": "enter", "pgdn": "pagedown", "pgup": "pageup", "del": "delete",
                "ins": "insert", "bs": "backspace", "spacebar": "space", "page_down": "pagedown",
                "page_up": "pageup"}


class KeymapError(Exception):
    """A keymap file that cannot be used, with where and what."""

    def __init__(self, path: str | Path, line: int | None, message: str, suggestion: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        self.suggestion = suggestion
        where = f"{self.path}:{line}" if line else self.path
        hint = f' — did you mean "{suggestion}"?' if suggestion else ""
        super().__init__(f"{where}: {message}{hint}")


@dataclass
class Preset:
    name: str
    keys: list[str]
    title: str
    filter: str
    columns: list[str] | None = None
    source: str = ""


@dataclass
class Keymap:
    bindings: dict[str, dict[str, list[str]]]  # screen → action → normalised keys
    presets: dict[str, Preset]
    files: list[str] = field(default_factory=list)

    def keys(self, screen: str, action: str) -> list[str]:
        return self.bindings.get(screen, {}).get(action, [])

    def textual(self) -> dict[str, str]:
        """Binding id → comma-separated keys, for `App.set_keymap`."""
        out: dict[str, str] = {}
        for screen, actions in self.bindings.items():
            for action, keys in actions.items():
                # An unbound action gets a key no terminal sends, so its default is dropped too.
                out[f"{screen}.{action}"] = ",".join(keys) if keys else "ctrl+shift+f24"
        for preset in self.presets.values():
            out[f"preset.{preset.name}"] = ",".join(preset.keys) if preset.keys else "ctrl+shift+f24"
        return out

    def display(self, screen: str, action: str) -> str:
        return ", ".join(key_display(k) for k in self.keys(screen, action))

    def preset_for_key(self, key: str) -> Preset | None:
        for preset in self.presets.values():
            if key in preset.keys:
                return preset
        return None


def key_display(key: str) -> str:
    shown = format_key(key)
    return {"⏎": "enter", "⌫": "backspace", "pgdn": "PgDn", "pgup": "PgUp", "esc": "Esc"}.get(shown, shown)


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest valid name (edit-distance ratio: "hots" → "host", not the substring "ts")."""
    from rapidfuzz import fuzz, process

    best = process.extractOne(word, list(choices), scorer=fuzz.ratio, score_cutoff=50)
    return str(best[0]) if best else None


def normalize_key(key: str) -> str | None:
    """Textual's name for a key as written in a keymap, or None when it is not a key."""
    if not isinstance(key, str):
        return None
    text = key.strip()
    if not text:
        return None
    if len(text) == 1:
        return _character_to_key(text)
    *mods, name = text.split("+") if not text.endswith("++") else [*text[:-2].split("+"), "+"]
    name = _KEY_ALIASES.get(name.lower(), name)
    if len(name) == 1:
        name = _character_to_key(name)
    if any(m.lower() not in _MODIFIERS for m in mods):
        return None
    if name not in _VALID_KEY_NAMES:
        lowered = name.lower()
        if lowered in _VALID_KEY_NAMES and len(name) > 1:
            name = lowered
        else:
            return None
    return "+".join([*(m.lower() for m in mods), name])


def _key_suggestion(key: str) -> str | None:
    text = key.strip()
    if "+" in text[:-1]:
        *mods, name = text.split("+")
        bad_mod = next((m for m in mods if m.lower() not in _MODIFIERS), None)
        if bad_mod is not None:
            fixed = _suggest(bad_mod.lower(), _MODIFIERS)
            return text.replace(bad_mod, fixed, 1) if fixed else None
        fixed_name = _suggest(name, _NAMED_KEYS)
        return "+".join([*mods, fixed_name]) if fixed_name else None
    return _suggest(text, _NAMED_KEYS)


# -- finding the line of a key in the file ------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")


def _header_parts(raw: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", raw))


def find_line(text: str, table: tuple[str, ...], key: str | None = None) -> int | None:
    """1-based line of `key` inside `[table]` (or of the table header when key is None)."""
    current: tuple[str, ...] = ()
    header_line: int | None = None
    key_re = re.compile(r"^\s*(?:\"" + re.escape(key) + r"\"|'" + re.escape(key) + r"'|" + re.escape(key)
                        + r")\s*=") if key is not None else None
    dotted_re = re.compile(r"^\s*" + re.escape(".".join((*table, key))) + r"\s*=") if key is not None else None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m and not line.lstrip().startswith("[["):
            current = _header_parts(m.group(1))
            if current == table and header_line is None:
                header_line = number
            continue
        if key_re is not None and current == table and key_re.match(line):
            return number
        if dotted_re is not None and current == () and dotted_re.match(line):
            return number
    return header_line


# -- loading --------------------------------------------------------------------------------------------
@dataclass
class _Layer:
    path: str
    text: str
    data: dict[str, Any]

    def line(self, table: tuple[str, ...], key: str | None = None) -> int | None:
        return find_line(self.text, table, key) or find_line(self.text, table[:1], None)

    def error(self, table: tuple[str, ...], key: str | None, message: str, suggestion: str | None = None) -> KeymapError:
        return KeymapError(self.path, self.line(table, key), message, suggestion)


def _read_layer(path: Path) -> _Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeymapError(path, None, f"cannot read keymap: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise KeymapError(path, None, "keymap is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else max(1, len(text.splitlines()))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise KeymapError(path, line, f"not valid TOML: {message}") from None
    return _Layer(str(path), text, data)


def _key_list(layer: _Layer, table: tuple[str, ...], name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        raw = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        raw = value
    else:
        raise layer.error(table, name, f'"{name}" must be a key or a list of keys, like "j" or ["j", "down"]')
    keys: list[str] = []
    for k in raw:
        norm = normalize_key(k)
        if norm is None:
            raise layer.error(table, name, f'unknown key "{k}" for "{name}"', _key_suggestion(k))
        if norm not in keys:
            keys.append(norm)
    return keys


def _apply_layer(layer: _Layer, km: Keymap, known_columns: list[str]) -> None:
    # Which (screen, action-or-preset) this layer sets, to resolve key clashes afterwards.
    owned: dict[str, dict[str, str]] = {}  # screen → key → owner name set in this layer
    for section, value in layer.data.items():
        if section == "presets":
            if not isinstance(value, dict):
                raise layer.error(("presets",), None, "[presets] must hold tables like [presets.logons]")
            for name, body in value.items():
                _apply_preset(layer, km, name, body, known_columns, owned)
            continue
        if section not in ACTIONS:
            raise KeymapError(layer.path, find_line(layer.text, (section,)) or find_line(layer.text, (), section),
                              f'unknown section "[{section}]"', _suggest(section, [*ACTIONS, "presets"]))
        if not isinstance(value, dict):
            raise KeymapError(layer.path, find_line(layer.text, (), section),
                              f'"{section}" must be a table: [{section}]')
        for action, keys_value in value.items():
            if action not in ACTIONS[section]:
                raise layer.error((section,), action, f'unknown action "{action}" in [{section}]',
                                  _suggest(action, list(ACTIONS[section])))
            keys = _key_list(layer, (section,), action, keys_value)
            _claim(layer, owned, section, action, keys, (section,), action)
            km.bindings.setdefault(section, {})[action] = keys
    _resolve_clashes(km, owned)


def _claim(layer: _Layer, owned: dict[str, dict[str, str]], screen: str, owner: str, keys: list[str],
           table: tuple[str, ...], name: str) -> None:
    taken = owned.setdefault(screen, {})
    for key in keys:
        other = taken.get(key)
        if other is not None and other != owner:
            raise layer.error(table, name, f'key "{key_display(key)}" is bound to both "{other}" and "{owner}" '
                                           f"in [{screen}]")
        taken[key] = owner


def _resolve_clashes(km: Keymap, owned: dict[str, dict[str, str]]) -> None:
    """Keys a layer bound are taken away from whatever earlier layers bound to them."""
    for screen, taken in owned.items():
        for key, owner in taken.items():
            for action, keys in km.bindings.get(screen, {}).items():
                if action != owner and key in keys:
                    keys.remove(key)
            if screen == PRESET_SECTION:
                for preset in km.presets.values():
                    if f"preset:{preset.name}" != owner and key in preset.keys:
                        preset.keys.remove(key)


def _apply_preset(layer: _Layer, km: Keymap, name: str, body: Any, known_columns: list[str],
                  owned: dict[str, dict[str, str]]) -> None:
    table = ("presets", name)
    if not isinstance(body, dict):
        raise layer.error(("presets",), name, f'preset "{name}" must be a table: [presets.{name}]')
    for fld in body:
        if fld not in PRESET_FIELDS:
            raise layer.error(table, fld, f'unknown preset field "{fld}" in [presets.{name}]',
                              _suggest(fld, PRESET_FIELDS))
    existing = km.presets.get(name)
    if existing is None:
        for required in ("key", "filter"):
            if required not in body:
                raise layer.error(table, None, f'preset "{name}" needs a "{required}"')
        existing = Preset(name, [], name.replace("_", " "), "", None, layer.path)
    preset = Preset(existing.name, list(existing.keys), existing.title, existing.filter,
                    list(existing.columns) if existing.columns else None, layer.path)
    if "key" in body:
        preset.keys = _key_list(layer, table, "key", body["key"])
    if "title" in body:
        if not isinstance(body["title"], str):
            raise layer.error(table, "title", "title must be text")
        preset.title = body["title"]
    if "filter" in body:
        if not isinstance(body["filter"], str):
            raise layer.error(table, "filter", "filter must be text")
        _check_filter(layer, table, body["filter"])
        preset.filter = body["filter"]
    if "columns" in body:
        cols = body["columns"]
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise layer.error(table, "columns", 'columns must be a list of column names, like ["time", "host"]')
        for c in cols:
            if c not in known_columns:
                raise layer.error(table, "columns", f'unknown column "{c}" in [presets.{name}]',
                                  _suggest(c, known_columns))
        preset.columns = list(cols)
    _claim(layer, owned, PRESET_SECTION, f"preset:{name}", preset.keys, table, "key")
    km.presets[name] = preset


def _check_filter(layer: _Layer, table: tuple[str, ...], text: str) -> None:
    """Syntax and typed-column errors only: unknown names may be fields of the case's events."""
    try:
        Compiler([]).compile(text)
    except FilterError as exc:
        if exc.message.startswith("unknown field"):
            return
        raise layer.error(table, "filter", f"filter: {exc.message} at column {exc.position + 1} ({exc.token!r})",
                          exc.suggestion) from None


def user_keymap_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("ashiato")) / "keymap.toml"


def load_keymap(path: str | Path | None = None, *, user_config: bool = True,
                default_path: str | Path = DEFAULT_PATH) -> Keymap:
    """The default keymap, then the user's (platform config dir), then `path`."""
    from .widgets.columns import KNOWN_COLUMNS

    km = Keymap({s: {} for s in ACTIONS}, {})
    layers: list[Path] = [Path(default_path)]
    if user_config:
        candidate = user_keymap_path()
        if candidate.is_file():
            layers.append(candidate)
    if path is not None:
        layers.append(Path(path))
    for layer_path in layers:
        layer = _read_layer(layer_path)
        _apply_layer(layer, km, KNOWN_COLUMNS)
        # The shipped defaults are named as such: their path depends on where ashiato is installed.
        km.files.append("built-in defaults" if layer_path == Path(DEFAULT_PATH) else str(layer_path))
    return km


def preset_check(km: Keymap, compiler: Compiler) -> list[str]:
    """Problems of preset filters against an open case (unknown fields), as messages."""
    problems = []
    for preset in km.presets.values():
        try:
            compiler.compile(preset.filter)
        except FilterError as exc:
            hint = f' (did you mean "{exc.suggestion}"?)' if exc.suggestion else ""
            problems.append(f"preset {preset.name} ({preset.source}): {exc.message}{hint}")
    return problems
