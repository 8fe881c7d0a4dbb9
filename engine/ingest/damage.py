"""What went wrong while reading one file: counted, located, and kept short."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_KEPT = 50


@dataclass
class Problem:
    location: str  # "path:line", "path: record 12", "path: chunk 6" …
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class Damage:
    """Skipped records of one file. Every one is counted; the first MAX_KEPT are kept in full."""

    path: str
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    def add(self, where: str | None, message: str, count: int = 1, *, always: bool = False) -> None:
        """`count` records were skipped there (a lost part of a file counts the records it held)."""
        self.skipped += count
        self.note(where, message, always=always)

    def note(self, where: str | None, message: str, *, always: bool = False) -> None:
        """Record a problem that lost nothing (a repaired byte, say); `always` keeps it past MAX_KEPT
        (what ended the reading of a file must be in its report)."""
        if len(self.problems) < MAX_KEPT or always:
            loc = f"{self.path}:{where}" if where and where[0].isdigit() else (
                f"{self.path}: {where}" if where else self.path)
            self.problems.append(Problem(loc, _one_line(message)))

    @property
    def first_error(self) -> str | None:
        return str(self.problems[0]) if self.problems else None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
