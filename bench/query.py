"""`ashiato query` on a big case: time to the first page of an event_id filter.

    python bench/query.py [--case /tmp/ashiato-bench/big.duckdb] [--events 10000000]

Builds the case with bench/bigcase.py when it is missing. Measures, median of 5, the whole
command as a user runs it (`ashiato query CASE 'event_id:4625' --format csv`, a fresh process)
and, as its baseline in the same run, a process that only starts Python and opens the case, so
the engine's own share is visible. Target: the whole command under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="/tmp/ashiato-bench/big.duckdb")
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    case = Path(args.case)
    if not case.exists():
        case.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "bench/bigcase.py", str(case), "--events", str(args.events)],
                       cwd=ROOT, check=True)
    py = sys.executable
    open_only = [py, "-c", f"from engine import Case; Case({str(case)!r}, read_only=True).cursor()"]
    results = {}
    for label, flt in (("event_id:4625", "event_id:4625"), ("user+type", "user:administrator -logon_type:5"),
                       ("substring", "mimikatz")):
        query = [py, "-m", "tui.cli", "query", str(case), flt, "--format", "csv", "--limit", "100"]
        base = statistics.median(timed(open_only) for _ in range(5))
        full = statistics.median(timed(query) for _ in range(5))
        results[label] = {"command_s": round(full, 3), "open_case_s": round(base, 3),
                          "engine_s": round(full - base, 3)}
        print(label, results[label], flush=True)
    import duckdb

    n = duckdb.connect(str(case), read_only=True).execute("SELECT count(*) FROM events").fetchall()[0][0]
    out = {"events": n, "target_command_s": 1.0, **results}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "query.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
