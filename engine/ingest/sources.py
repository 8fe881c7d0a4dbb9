"""Evidence files: find them, hash them, tell what they hold by content, open them read-only."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

EVTX_MAGIC = b"ElfFile\x00"
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Evidence:
    path: Path
    bytes: int


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Evidence], list[str]]:
    """Files named, and every file below the directories named (sorted, so runs are repeatable)."""
    found: list[Evidence] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for sub in sorted(x for x in p.rglob("*") if x.is_file()):
                found.append(Evidence(sub, sub.stat().st_size))
        elif p.is_file():
            found.append(Evidence(p, p.stat().st_size))
        else:
            missing.append(str(p))
    return found, missing


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def open_evidence(path: Path) -> Iterator[IO[bytes]]:
    """The file's content, decompressed when it is gzip. Opened read-only; never written."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


def sniff(path: Path, size: int = 4096) -> bytes:
    with open_evidence(path) as f:
        try:
            return f.read(size)
        except (OSError, EOFError, gzip.BadGzipFile):
            return b""


def kind_of(head: bytes) -> str:
    """'evtx', 'json' or 'unknown', from the first bytes of the (decompressed) content."""
    if head.startswith(EVTX_MAGIC):
        return "evtx"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def describe_head(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes)"
    shown = head[:16]
    return "first bytes: " + " ".join(f"{b:02x}" for b in shown) + f" {shown!r}"


@contextmanager
def evtx_on_disk(path: Path) -> Iterator[Path]:
    """The parsers want a seekable EVTX file; a gzip'd one is expanded into a private temp file."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    if not compressed:
        yield path
        return
    fd, tmp = tempfile.mkstemp(suffix=".evtx", prefix="ashiato-")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as gz:
            shutil.copyfileobj(gz, out, 8 << 20)
        yield Path(tmp)
    finally:
        os.unlink(tmp)
