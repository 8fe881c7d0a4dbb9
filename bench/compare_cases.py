"""Two cases built from the same input, compared row by row: what a change to the ingest changed.

    python bench/compare_cases.py OLD.duckdb NEW.duckdb [--show 5]

Build OLD with the commit before the change (`git worktree add /tmp/old REV`, then from there
`python -m tui.cli ingest OLD.duckdb ../shared/corpus`) and NEW with the working tree. Events are
matched by file (path and content hash) and place in it (`eid` below the source id), so the two
cases may number their files differently. Reported: events only in one case (per file), and for
the matched ones, per column, how many differ (the typed columns, `pos`, and the stored document
and event data). Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--show", type=int, default=5, help="examples shown per difference")
    args = ap.parse_args()
    from engine.schema import EVENT_COLUMN_NAMES

    con = duckdb.connect()
    con.execute("ATTACH ? AS a (READ_ONLY)", [args.old])
    con.execute("ATTACH ? AS b (READ_ONLY)", [args.new])
    # An event's identity across the two cases: its file (by content) and its place in the file.
    for side in ("a", "b"):
        con.execute(f"""CREATE TEMP TABLE {side}_ev AS
            SELECT s.sha256, s.path, e.eid & 4294967295 AS seq, e.*, d.data, d.raw
            FROM {side}.events e JOIN {side}.sources s USING (source_id)
            LEFT JOIN {side}.event_data d USING (eid)""")
    only = {}
    for side, other in (("a", "b"), ("b", "a")):
        only[side] = con.execute(f"""SELECT path, count(*) FROM {side}_ev x
            WHERE NOT EXISTS (SELECT 1 FROM {other}_ev y WHERE y.sha256 = x.sha256 AND y.seq = x.seq)
            GROUP BY path ORDER BY path""").fetchall()
    columns = [c for c in EVENT_COLUMN_NAMES if c not in ("eid", "source_id")] + ["data", "raw"]
    diffs = {}
    for c in columns:
        n, examples = con.execute(f"""SELECT count(*), list(x.path || ' #' || x.seq)[1:{args.show}]
            FROM a_ev x JOIN b_ev y USING (sha256, seq)
            WHERE x."{c}" IS DISTINCT FROM y."{c}" """).fetchall()[0]
        if n:
            diffs[c] = {"rows": int(n), "examples": examples}
    matched = con.execute("SELECT count(*) FROM a_ev x JOIN b_ev y USING (sha256, seq)").fetchall()[0][0]
    report = {
        "old_events": con.execute("SELECT count(*) FROM a_ev").fetchall()[0][0],
        "new_events": con.execute("SELECT count(*) FROM b_ev").fetchall()[0][0],
        "matched": matched,
        "only_in_old": [{"path": p, "events": n} for p, n in only["a"]],
        "only_in_new": [{"path": p, "events": n} for p, n in only["b"]],
        "columns_differing": diffs,
    }
    print(json.dumps(report, indent=2, default=str))
    return 1 if only["a"] or only["b"] or diffs else 0


if __name__ == "__main__":
    sys.exit(main())
