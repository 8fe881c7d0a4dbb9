"""Evidence files: find them, hash them, tell what they hold by content, open them read-only."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
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
        if not str(raw).strip():
            # Path("") is the working directory: an unset shell variable must not ingest it all.
            missing.append(repr(str(raw)))
            continue
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


class GunzipStream:
    """A gzip file's content, read forward. Unlike GzipFile, a truncated or corrupt file yields
    everything readable and then ends, with `problem` saying why, so the good part is kept."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        self._buf = b""
        self._done = False
        self.problem: str | None = None

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            chunk = self._raw.read(1 << 20)
            try:
                if chunk:
                    self._buf += self._z.decompress(chunk)
                    if self._z.eof and self._z.unused_data:
                        # Concatenated gzip members: start the next one.
                        rest = self._z.unused_data
                        self._z = zlib.decompressobj(wbits=47)
                        self._buf += self._z.decompress(rest)
                else:
                    self._buf += self._z.flush()
                    if not self._z.eof:
                        self.problem = "compressed data ends early (truncated gzip); the rest is lost"
                    self._done = True
            except zlib.error as exc:
                self.problem = f"corrupt gzip data ({exc}); the rest is lost"
                self._done = True
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


@contextmanager
def open_evidence(path: Path) -> Iterator[IO[bytes]]:
    """The file's content, decompressed when it is gzip. Opened read-only; never written."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == GZIP_MAGIC:
            yield GunzipStream(raw)  # type: ignore[misc]
        else:
            yield raw


def sniff(path: Path, size: int = 4096) -> bytes:
    with open_evidence(path) as f:
        return f.read(size)


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
def evtx_on_disk(path: Path) -> Iterator[tuple[Path, str | None]]:
    """The parsers want a seekable EVTX file; a gzip'd one is expanded into a private temp file.
    Yields the path and, for a damaged gzip, what was wrong with it."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    if not compressed:
        yield path, None
        return
    fd, tmp = tempfile.mkstemp(suffix=".evtx", prefix="ashiato-")
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as raw:
            gz = GunzipStream(raw)
            shutil.copyfileobj(gz, out, 8 << 20)
        yield Path(tmp), gz.problem
    finally:
        os.unlink(tmp)
