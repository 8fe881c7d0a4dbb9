"""Ordering a whole case (what an ingest does when new events interleave with stored ones).

    python bench/reorder.py [--case /tmp/ashiato-bench/big.duckdb]

On a copy of a big case (built by bench/bigcase.py when missing), every position is cleared and
`Case.reorder()` gives them back. The baseline, in the same run on the same copy, is the one-step
form it replaced: numbering and sorting the whole rows in one window
(`SELECT * REPLACE (row_number() OVER (ORDER BY key) - 1 AS pos)`). Both run inside a transaction
that is rolled back, on the case's usual 512 MB memory limit. Prints seconds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Case  # noqa: E402
from engine.schema import ORDER_KEY  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="/tmp/ashiato-bench/big.duckdb")
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    source = Path(args.case)
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "bench/bigcase.py", str(source), "--events", str(args.events)],
                       cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        copy = Path(tmp) / "case.duckdb"
        shutil.copy(source, copy)
        with Case(copy) as case:
            con = case.con
            n = case.event_count()
            con.execute("UPDATE events SET pos = NULL")
            con.execute("CHECKPOINT")

            con.execute("BEGIN TRANSACTION")
            t0 = time.perf_counter()
            con.execute(f"CREATE TABLE _window AS SELECT * REPLACE (row_number() OVER (ORDER BY {ORDER_KEY}) - 1 "
                        "AS pos) FROM events")
            baseline = time.perf_counter() - t0
            con.execute("ROLLBACK")

            # reorder() runs its own transaction; it is timed, then its result checked.
            t0 = time.perf_counter()
            case.reorder()
            ordered = time.perf_counter() - t0
            dense = con.execute("SELECT min(pos) = 0 AND max(pos) = count(*) - 1 AND count(DISTINCT pos) = count(*) "
                                "FROM events").fetchall()[0][0]
    out = {"events": n, "window_baseline_s": round(baseline, 1), "reorder_s": round(ordered, 1),
           "ratio": round(baseline / ordered, 2), "dense": bool(dense)}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "reorder.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
