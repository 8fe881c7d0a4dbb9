"""Adding to a case that already holds a lot, as ratios against a fresh ingest of the same input in
the same run (issue 11's incremental targets).

    python bench/incremental.py [--case /tmp/ashiato-bench-lineage.duckdb] [--events 100000] [--runs 3]

1. 100k events into 10M: --events generated NXLog JSON lines (fixtures.generate --scale, the
   synthetic incident's period, 2024-03) are ingested (`ashiato ingest`, dedupe on, as a user runs
   it) into a copy of the big case (bench/lineage.py --case-only builds it: 10,066,334 events) and,
   as the baseline, into an empty case. Target: into-10M seconds <= 2x the empty-case seconds.
2. Re-collecting a host a day later: the case holds an EVTX file cut after 90% of its chunks (the
   log as collected the first time); the whole file (the log a day later: the same records and 10%
   more) is then ingested into it. Only the new records may be stored. Baseline: a fresh ingest of
   the whole file into an empty case. Target: re-collect speed (the file's records / seconds) >=
   0.5x the fresh ingest's.
Each ingest runs in its own process; medians of --runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
RECOLLECT = CORPUS / "evtx" / "deepbluecli" / "evtx" / "smb-password-guessing-security.evtx"
HEADER, CHUNK = 4096, 65536


def fresh(path: Path) -> Path:
    for p in (path, Path(f"{path}.wal"), Path(f"{path}.notes")):
        p.unlink(missing_ok=True)
    return path


def ingest(case: Path, *inputs: Path) -> float:
    t0 = time.perf_counter()
    got = subprocess.run([sys.executable, "-m", "tui.cli", "ingest", str(case), *map(str, inputs), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if got.returncode != 0:
        raise SystemExit(f"ingest failed: {got.stderr[-2000:]}")
    return seconds


def count(case: Path) -> int:
    import duckdb

    con = duckdb.connect(str(case), read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchall()[0][0])
    finally:
        con.close()


def into_big(args: argparse.Namespace, work: Path) -> dict[str, object]:
    src = Path(args.case)
    if not src.exists():
        raise SystemExit(f"{src}: build it first with `python bench/lineage.py --case-only`")
    gen = work / "gen"
    new = gen / f"scaled-nxlog-{args.events}.jsonl"
    if not new.exists():
        subprocess.run([sys.executable, "-m", "fixtures.generate", str(gen), "--scale", str(args.events),
                        "--seed", "11"], cwd=ROOT, check=True, capture_output=True)
    # Brought up to date once (derived tables, findings of the current rules), as an ingest leaves
    # a case: otherwise the first open of each copy would redo that and be counted as the add.
    from engine import Case

    Case(src).close()
    before = count(src)
    empty_s, big_s = [], []
    for _ in range(args.runs):
        empty_s.append(ingest(fresh(work / "empty.duckdb"), new))
        big = fresh(work / "big.duckdb")
        shutil.copyfile(src, big)
        big_s.append(ingest(big, new))
    added = count(big) - before
    e, b = statistics.median(empty_s), statistics.median(big_s)
    return {"case_events": before, "added": added, "empty_seconds": round(e, 2), "into_case_seconds": round(b, 2),
            "ratio": round(b / e, 2), "target": 2.0, "runs": {"empty": empty_s, "into_case": big_s}}


def recollect(args: argparse.Namespace, work: Path) -> dict[str, object]:
    import struct

    data = RECOLLECT.read_bytes()
    # The chunks that hold records (the file's tail is unused, zeroed chunks), and where 90% of
    # the records end: the first collection is the file cut at that chunk boundary.
    ends = [struct.unpack_from("<Q", data, HEADER + i * CHUNK + 32)[0]
            for i in range((len(data) - HEADER) // CHUNK) if data[HEADER + i * CHUNK:][:8] == b"ElfChnk\0"]
    keep = next(i + 1 for i, last in enumerate(ends) if last >= 0.9 * ends[-1])
    first = work / "first-collection.evtx"
    first.write_bytes(data[:HEADER + keep * CHUNK])
    whole = work / "a-day-later.evtx"
    whole.write_bytes(data)
    fresh_s, again_s = [], []
    for _ in range(args.runs):
        case = fresh(work / "recollect-fresh.duckdb")
        fresh_s.append(ingest(case, whole))
        total = count(case)
        case = fresh(work / "recollect.duckdb")
        ingest(case, first)
        held = count(case)
        again_s.append(ingest(case, whole))
        stored = count(case) - held
    f, a = statistics.median(fresh_s), statistics.median(again_s)
    return {"file_records": total, "held_before": held, "overlap": round(held / total, 3), "stored_new": stored,
            "expected_new": total - held, "fresh_seconds": round(f, 2), "recollect_seconds": round(a, 2),
            "speed_ratio": round(f / a, 2), "target": 0.5, "runs": {"fresh": fresh_s, "recollect": again_s}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="/tmp/ashiato-bench-lineage.duckdb")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/ashiato-bench-incremental")
    ap.add_argument("--only", choices=("big", "recollect"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}
    if args.only in (None, "recollect"):
        results["recollect"] = recollect(args, work)
        print(json.dumps({"recollect": results["recollect"]}), flush=True)
    if args.only in (None, "big"):
        results["into_big_case"] = into_big(args, work)
        print(json.dumps({"into_big_case": results["into_big_case"]}), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "incremental.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
