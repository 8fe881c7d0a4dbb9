"""Build a large case (default 10 million events) for the query and TUI benchmarks.

    python bench/bigcase.py OUT.duckdb [--events 10000000]

The base is the real corpus (../shared/corpus: EVTX and JSON exports) when present, else the
generated demo incident. Its events are replicated in SQL, each copy shifted by whole days with
distinct ids and record ids, so nothing deduplicates and the time line stays realistic; the
original documents are replicated too (DuckDB compresses the repeats), then the case is ordered.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Case  # noqa: E402
from engine.ingest import ingest  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def build(out: Path, events: int) -> None:
    for p in (out, Path(str(out) + ".wal")):
        if p.exists():
            p.unlink()
    t0 = time.perf_counter()
    with Case(out, memory_limit="4GB") as case:
        if CORPUS.exists():
            ingest(case, [CORPUS / "evtx", CORPUS / "ndjson"])
        else:
            from fixtures.incident import incident
            from fixtures.shapes import write_all

            with tempfile.TemporaryDirectory() as tmp:
                write_all(incident(seed=7, noise=2000), Path(tmp))
                ingest(case, [tmp])
        con = case.con
        # Documents over 64 KiB (a 1 MiB script block, say) stay in the first copy only.
        base = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        copies = max(1, -(-events // base))
        print(f"base {base:,} events, {copies} copies", file=sys.stderr)
        con.execute("CREATE TEMP TABLE base_ev AS SELECT * FROM events")
        con.execute("""CREATE TEMP TABLE base_d AS SELECT eid, data, raw FROM event_data
                       WHERE coalesce(length(raw), 0) + coalesce(length(data::VARCHAR), 0) < 65536""")
        for k in range(1, copies):
            with case.transaction():
                shift = k << 44
                con.execute(f"""INSERT INTO events SELECT * REPLACE (
                        eid + {shift} AS eid, NULL AS pos, ts + INTERVAL ({k}) DAY AS ts,
                        record_id + CAST({k} AS BIGINT) * 100000000 AS record_id) FROM base_ev""")
                con.execute(f"INSERT INTO event_data SELECT eid + {shift}, data, raw FROM base_d")
            if k % 10 == 0:
                print(f"  copy {k}/{copies}", file=sys.stderr)
        case.reorder()
        n = case.event_count()
    print(f"{out}: {n:,} events in {time.perf_counter() - t0:.0f}s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    build(Path(args.out), args.events)


if __name__ == "__main__":
    main()
