"""Evidence files: find them, hash them, tell what they hold by content, open them read-only."""

from __future__ import annotations

import codecs
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


DIRECTORY_UNREADABLE = ": cannot list this directory"


def discover(paths: Iterable[str | os.PathLike[str]], unreadable: list[str] | None = None,
             exclude: Iterable[Path] = ()) -> tuple[list[Evidence], list[str]]:
    """Files named, and every file below the directories named (sorted, so runs are repeatable).
    Paths that do not exist are returned; directories that cannot be listed are added to
    `unreadable` ("path: reason"); `exclude` (the case file itself) is left out."""
    found: list[Evidence] = []
    missing: list[str] = []
    skip = {_same(p) for p in exclude}

    def listing_failed(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append(f"{os.path.abspath(exc.filename)}{DIRECTORY_UNREADABLE} ({exc.strerror}); "
                              "its files are not read")

    for raw in paths:
        if not str(raw).strip():
            # Path("") is the working directory: an unset shell variable must not ingest it all.
            missing.append(repr(str(raw)))
            continue
        p = Path(raw)
        if p.is_dir():
            subs: list[Path] = []
            for root, dirs, files in os.walk(p, onerror=listing_failed):
                dirs.sort()
                subs += [Path(root, f) for f in files]
            for sub in sorted(subs):
                if sub.is_file() and _same(sub) not in skip:
                    found.append(Evidence(sub, sub.stat().st_size))
        elif p.is_file():
            found.append(Evidence(p, p.stat().st_size))
        elif p.is_symlink():
            missing.append(f"{p} (a symbolic link to nothing, or in a loop)")
        else:
            missing.append(str(p))
    return found, missing


def _same(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


class GunzipStream:
    """A gzip file's content, read forward. Unlike GzipFile, a truncated or corrupt file yields
    everything readable and then ends, with `problem` saying why, so the good part is kept."""

    PIECE = 1 << 20
    # On corrupt data the piece is fed again in steps this small, from a copy of the decompressor
    # taken before it, so what decodes before the damage (all of it, for a bad checksum) is kept.
    STEP = 512

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        self._buf = b""
        self._done = False
        self._consumed = 0  # compressed bytes read
        self.problem: str | None = None

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            chunk = self._raw.read(self.PIECE)
            if not chunk:
                self._buf += self._z.flush()
                if not self._z.eof:
                    self.problem = "compressed data ends early (truncated gzip); the rest is lost"
                self._done = True
                break
            before = self._z.copy()
            try:
                self._buf += self._decompress(self._z, chunk)
            except zlib.error as exc:
                self._salvage(before, chunk, exc)
            self._consumed += len(chunk)
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _decompress(self, z: zlib._Decompress, data: bytes) -> bytes:
        out = z.decompress(data)
        while z.eof and z.unused_data:
            # Concatenated gzip members: start the next one.
            # Zero padding (tape and block devices write it) can follow a member, before the next one
            # or the end: a member always starts with its magic, never with a zero.
            rest = z.unused_data.lstrip(b"\x00")
            if not rest:
                break
            z = self._z = zlib.decompressobj(wbits=47)
            out += z.decompress(rest)
        return out

    def _salvage(self, z: zlib._Decompress, chunk: bytes, exc: zlib.error) -> None:
        self._z = z
        done = 0
        try:
            for done in range(0, len(chunk), self.STEP):
                before = self._z.copy()
                self._buf += self._decompress(self._z, chunk[done:done + self.STEP])
        except zlib.error:
            # The failing step once more, a byte at a time, up to the damaged byte.
            self._z = before
            try:
                for i in range(done, min(done + self.STEP, len(chunk))):
                    self._buf += self._decompress(self._z, chunk[i:i + 1])
                    done = i + 1
            except zlib.error:
                pass
        where = self._consumed + done
        if "check" in str(exc):  # "incorrect data check" / "incorrect length check": all was decoded
            self.problem = f"the gzip checksum does not match ({exc}): the content read may be damaged"
        else:
            self.problem = (f"corrupt gzip data at about byte {where:,} of the compressed file ({exc}); "
                            "what follows is lost")
        self._done = True


class Utf8Stream:
    """UTF-16 text (what PowerShell 5's Out-File and `>` write) read as UTF-8, so exports made on
    Windows ingest like any other. `head` is the first bytes already read from `raw`."""

    def __init__(self, raw: IO[bytes], head: bytes) -> None:
        encoding = "utf-16-be" if head.startswith(b"\xfe\xff") or (head[:1] == b"\x00" and head[1:2] != b"\x00") \
            else "utf-16-le"
        self._raw = raw
        self._pending = head.removeprefix(b"\xff\xfe").removeprefix(b"\xfe\xff")
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._out = b""
        self._done = False
        self.problem = getattr(raw, "problem", None)

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._out) < n):
            chunk = self._pending or self._raw.read(1 << 20)
            self._pending = b""
            self._out += self._decoder.decode(chunk, final=not chunk).encode("utf-8")
            self._done = not chunk
        self.problem = getattr(self._raw, "problem", None) or self.problem
        if n < 0:
            out, self._out = self._out, b""
        else:
            out, self._out = self._out[:n], self._out[n:]
        return out


def is_utf16(head: bytes) -> bool:
    """A byte order mark, or the NUL beside every ASCII character that UTF-16 JSON starts with."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if len(head) < 4:
        return False
    json_start = b"{[ \t\r\n"
    little = head[1] == 0 and head[3] == 0 and head[0] in json_start
    big = head[0] == 0 and head[2] == 0 and head[1] in json_start
    return little or big


@contextmanager
def open_evidence(path: Path) -> Iterator[IO[bytes]]:
    """The file's content, decompressed when it is gzip and as UTF-8 when it is UTF-16. Opened
    read-only; never written."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream: IO[bytes] = GunzipStream(raw) if magic == GZIP_MAGIC else raw  # type: ignore[assignment]
        head = stream.read(4)
        if is_utf16(head):
            yield Utf8Stream(stream, head)  # type: ignore[misc]
            return
        if stream is raw:
            raw.seek(0)
            yield raw
            return
        yield Prepended(head, stream)  # type: ignore[misc]


class Prepended:
    """Bytes already read, then the rest of a stream (whose `problem`, if any, shows through)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    @property
    def problem(self) -> str | None:
        return getattr(self._rest, "problem", None)

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(n)
        if n < 0:
            out, self._head = self._head + self._rest.read(), b""
            return out
        out, self._head = self._head[:n], self._head[n:]
        if len(out) < n:
            out += self._rest.read(n - len(out))
        return out


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
    # Junk before the first document (a text header, stray bytes): a later line that starts like
    # JSON makes it a candidate, which the reader confirms by parsing, or reports as unrecognised.
    if any(line.lstrip(b" \t")[:1] in (b"{", b"[") for line in text.split(b"\n")[1:]):
        return "json"
    return "unknown"


_KNOWN_MAGIC = {
    GZIP_MAGIC: "gzip data inside the gzip: compressed twice, decompress it once first",
    b"PK\x03\x04": "a zip archive: unzip it first",
    b"7z\xbc\xaf": "a 7-Zip archive: extract it first",
    b"SQLite format 3": "an SQLite database",
}


def describe_head(head: bytes) -> str:
    if not head:
        return "empty file (0 bytes)"
    for magic, what in _KNOWN_MAGIC.items():
        if head.startswith(magic):
            return what
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
