"""Boot epochs: a LogonId (and a PID) is unique only within one boot of one host (domain.md §2).

An epoch starts at a boot marker (Security 4608, System 6005 / 6009) and ends at a shutdown marker
(Security 4609 and 1100, System 6006) or at the next boot. The three markers of one boot are
written within seconds of each other, so a boot marker less than ten minutes after another one of
the same host opens no new epoch, unless the epoch already has a marker of that kind (each is
written once a boot: two 4608 twenty seconds apart are two boots). Events that follow a shutdown belong to the next boot even when
they come before its first marker, and a shutdown with later events but no boot marker after it
(the System log not collected, say) still starts a new epoch: nothing of the same boot can follow
a shutdown. Epoch 0 holds what a host logged before the first boot the log shows.

Markers are a few rows a boot, so the epochs are worked out in Python from one query; the table
`boots` then holds, per host, each epoch's first position, and every other derived table finds an
event's epoch by an ASOF join on (host, pos).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

Cursor = duckdb.DuckDBPyConnection

# Event-log service markers are written by its own provider; other providers reuse these ids.
_EVENTLOG = "ends_with(lower(coalesce(provider, 'eventlog')), 'eventlog')"
BOOT_MARKER = (f"((channel = 'Security' AND event_id = 4608) "
               f"OR (channel = 'System' AND event_id IN (6005, 6009) AND {_EVENTLOG}))")
SHUTDOWN_MARKER = (f"((channel = 'Security' AND (event_id = 4609 OR (event_id = 1100 AND {_EVENTLOG}))) "
                   f"OR (channel = 'System' AND event_id = 6006 AND {_EVENTLOG}))")
SAME_BOOT = timedelta(minutes=10)
# The last epoch of a host runs to the end of the case.
OPEN_END = 2**62

DDL = """CREATE TABLE IF NOT EXISTS boots (
  host VARCHAR,
  boot INTEGER,
  start_pos BIGINT,
  end_pos BIGINT,
  start_ts TIMESTAMP,
  start_reason VARCHAR,
  end_ts TIMESTAMP,
  end_reason VARCHAR
)"""


@dataclass
class Boot:
    host: str
    boot: int
    start_pos: int
    end_pos: int
    start_ts: datetime | None
    start_reason: str
    end_ts: datetime | None = None
    end_reason: str = "open"  # shutdown | reboot | open

    def row(self) -> tuple[Any, ...]:
        return (self.host, self.boot, self.start_pos, self.end_pos, self.start_ts, self.start_reason,
                self.end_ts, self.end_reason)


def compute(cur: Cursor) -> list[Boot]:
    """Every host's epochs, in order."""
    markers = cur.execute(
        f"""SELECT host, pos, ts, event_id, {BOOT_MARKER} AS is_boot FROM events
            WHERE host IS NOT NULL AND ({BOOT_MARKER} OR {SHUTDOWN_MARKER}) ORDER BY host, pos""").fetchall()
    bounds = {h: (int(lo), int(hi), t) for h, lo, hi, t in cur.execute(
        "SELECT host, min(pos), max(pos), arg_min(ts, pos) FROM events WHERE host IS NOT NULL GROUP BY host"
    ).fetchall()}
    by_host: dict[str, list[tuple[int, datetime | None, int, bool]]] = {h: [] for h in bounds}
    for host, pos, ts, event_id, is_boot in markers:
        by_host[host].append((int(pos), ts, int(event_id), bool(is_boot)))
    boots: list[Boot] = []
    for host, found in by_host.items():
        first_pos, last_pos, first_ts = bounds[host]
        boots += _epochs(host, found, first_pos, last_pos, first_ts)
    return boots


def _epochs(host: str, markers: list[tuple[int, datetime | None, int, bool]], first_pos: int,
            last_pos: int, first_ts: datetime | None) -> list[Boot]:
    epochs: list[Boot] = [Boot(host, 0, -1, OPEN_END, first_ts, "log start")]
    prev: tuple[int, datetime | None, int, bool] | None = None
    after_shutdown = False  # an epoch was opened right after a shutdown and has no boot marker yet
    kinds: set[int] = set()  # the boot markers of the current epoch: each is written once a boot
    for pos, ts, event_id, is_boot in markers:
        current = epochs[-1]
        if is_boot:
            if after_shutdown:
                current.start_reason = str(event_id)
                if ts is not None:
                    current.start_ts = ts
                after_shutdown = False
                kinds = {event_id}
            elif (prev is not None and prev[3] and prev[1] is not None and ts is not None
                  and ts - prev[1] < SAME_BOOT and event_id not in kinds):
                kinds.add(event_id)  # another marker of the same boot (4608, 6005, 6009)
            else:
                # A boot marker already seen in this epoch means another boot, however soon
                # after (a crash and a quick restart log no shutdown).
                _close(current, pos, ts, "reboot")
                epochs.append(Boot(host, current.boot + 1, pos, OPEN_END, ts, str(event_id)))
                kinds = {event_id}
        else:
            if after_shutdown:
                # Another shutdown marker of the same shutdown (4609, 1100, 6006 in a row): the next
                # epoch starts after the last of them.
                current.start_pos = pos + 1
                epochs[-2].end_pos = pos
            else:
                _close(current, pos + 1, ts, "shutdown")
                epochs.append(Boot(host, current.boot + 1, pos + 1, OPEN_END, None, "after shutdown"))
                after_shutdown = True
        prev = (pos, ts, event_id, is_boot)
    if after_shutdown and epochs[-1].start_pos > last_pos:
        # A shutdown is the host's last event: no epoch follows it.
        epochs.pop()
        epochs[-1].end_pos = OPEN_END
    if len(epochs) > 1 and epochs[1].start_pos <= first_pos:
        # The log starts with a boot: nothing happened before it.
        epochs.pop(0)
    return epochs


def _close(epoch: Boot, next_start: int, ts: datetime | None, reason: str) -> None:
    epoch.end_pos = next_start - 1
    epoch.end_ts = ts
    epoch.end_reason = reason


def store(cur: Cursor, boots: list[Boot], *, fill_after_shutdown: bool = True) -> None:
    """Replace the `boots` table. An epoch opened by a shutdown and never by a boot marker starts
    at the first event after that shutdown: its time is looked up here."""
    cur.execute(DDL)
    cur.execute("DELETE FROM boots")
    if not boots:
        return
    import pyarrow as pa

    rows = [b.row() for b in boots]
    names = ["host", "boot", "start_pos", "end_pos", "start_ts", "start_reason", "end_ts", "end_reason"]
    table = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)},
                     schema=pa.schema([("host", pa.string()), ("boot", pa.int32()), ("start_pos", pa.int64()),
                                       ("end_pos", pa.int64()), ("start_ts", pa.timestamp("us")),
                                       ("start_reason", pa.string()), ("end_ts", pa.timestamp("us")),
                                       ("end_reason", pa.string())]))
    cur.register("_boots_in", table)
    cur.execute("INSERT INTO boots SELECT * FROM _boots_in")
    cur.unregister("_boots_in")
    if fill_after_shutdown:
        cur.execute("""UPDATE boots SET start_ts = (SELECT min(e.ts) FROM events e
                                                     WHERE e.host = boots.host AND e.pos >= boots.start_pos
                                                       AND e.pos <= boots.end_pos)
                       WHERE start_ts IS NULL""")
    # A reboot without a logged shutdown ended the epoch somewhere before the next one began.
    cur.execute("""UPDATE boots SET end_ts = n.start_ts FROM boots n
                   WHERE n.host = boots.host AND n.boot = boots.boot + 1 AND boots.end_reason = 'reboot'""")


def boot_of_sql(table: str) -> str:
    """`table` (with host and pos) joined to its epoch: the columns of `table` plus `boot`."""
    return (f"(SELECT t.*, b.boot, b.start_pos AS boot_start_pos, b.end_pos AS boot_end_pos "
            f"FROM {table} t ASOF JOIN boots b ON t.host = b.host AND t.pos >= b.start_pos)")


def listing(cur: Cursor, host: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM boots" + (" WHERE lower(host) = lower(?)" if host else "") + " ORDER BY host, boot"
    result = cur.execute(sql, [host] if host else [])
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]
