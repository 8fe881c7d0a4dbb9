"""Ingest speed and memory, as ratios against baselines measured in the same run.

    python bench/ingest.py [--evtx-records 400000] [--json-bytes 1e9] [--workdir /tmp/ashiato-bench]

EVTX: the parseable files of ../shared/corpus/evtx are replicated (symlinks under distinct names)
to about --evtx-records records. Baseline: plain iteration with evtx's records_json() in one
process. Measured: `ashiato ingest --no-dedupe` end to end, to a queryable case.

JSON lines: the flat Security-Datasets files (NXLog shape) decompressed, concatenated and
replicated to about --json-bytes. Baseline: DuckDB's own `SELECT count(*) FROM read_json_objects()`.

Memory: the peak RSS of the ingest process (psutil, sampled), for the data and for 4x the data.
Each ingest runs in a fresh subprocess so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


def evtx_files() -> list[Path]:
    return sorted(p for p in (CORPUS / "evtx").rglob("*.evtx") if p.stat().st_size > 0)


def count_evtx(files: list[Path]) -> tuple[int, float]:
    import evtx

    t0 = time.perf_counter()
    n = 0
    for f in files:
        it = evtx.PyEvtxParser(str(f)).records_json()
        while True:
            try:
                for _ in it:
                    n += 1
                break
            except (RuntimeError, OSError):
                continue
    return n, time.perf_counter() - t0


def replicate_evtx(work: Path, target: int) -> tuple[Path, list[Path]]:
    files = evtx_files()
    per_copy, _ = count_evtx(files)
    copies = max(1, round(target / per_copy))
    root = work / f"evtx-x{copies}"
    out: list[Path] = []
    for c in range(copies):
        d = root / f"copy{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            link = d / f"{i:04d}_{f.name}"
            if not link.exists():
                link.symlink_to(f)
            out.append(link)
    return root, out


def build_json(work: Path, target_bytes: float) -> Path:
    src = sorted((CORPUS / "ndjson" / "security-datasets").rglob("*.json.gz"))
    base = work / "nxlog-base.jsonl"
    if not base.exists():
        with open(base, "wb") as out:
            for f in src:
                with gzip.open(f, "rb") as g:
                    head = g.peek(200)[:200] if hasattr(g, "peek") else b""
                    if b'"winlog' in head or b'"beat"' in head or b'"log_name"' in head:
                        continue  # the two winlogbeat 6 files are another shape
                    for line in g:
                        if line.strip():
                            out.write(line if line.endswith(b"\n") else line + b"\n")
    copies = max(1, round(target_bytes / base.stat().st_size))
    big = work / f"nxlog-x{copies}.jsonl"
    if not big.exists():
        data = base.read_bytes()
        with open(big, "wb") as out:
            for _ in range(copies):
                out.write(data)
    return big


def warm(paths: list[Path]) -> None:
    """Read the inputs once so the baseline and the ingest both find them in the page cache:
    otherwise whichever runs first pays for the disk, and the ratio swings by 3x between runs."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def duckdb_scan(path: Path) -> tuple[int, float]:
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    n = con.execute("SELECT count(*) FROM read_json_objects(?)", [str(path)]).fetchall()[0][0]
    return int(n), time.perf_counter() - t0


def peak_rss(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its standard output and peak RSS in MB (psutil, sampled every 20 ms)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    return out, peak / 2**20


def run_ingest(case: Path, inputs: list[Path]) -> dict[str, float]:
    """`ashiato ingest` in a subprocess; wall time and peak RSS (sampled every 20 ms)."""
    for p in (case, Path(str(case) + ".wal")):
        if p.exists():
            p.unlink()
    cmd = [sys.executable, "-m", "tui.cli", "ingest", str(case), *map(str, inputs), "--no-dedupe", "--quiet"]
    t0 = time.perf_counter()
    _, peak_mb = peak_rss(cmd)
    seconds = time.perf_counter() - t0
    import duckdb

    con = duckdb.connect(str(case), read_only=True)
    records = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    return {"seconds": seconds, "records": records, "peak_rss_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evtx-records", type=float, default=400_000)
    ap.add_argument("--json-bytes", type=float, default=1e9)
    ap.add_argument("--workdir", default="/tmp/ashiato-bench")
    ap.add_argument("--skip-memory-4x", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    root, files = replicate_evtx(work, int(args.evtx_records))
    warm(files)
    n, base_s = count_evtx(files)
    got = run_ingest(work / "evtx.duckdb", [root])
    results["evtx"] = {
        "baseline_records": n, "baseline_seconds": round(base_s, 2), "baseline_rps": round(n / base_s),
        "ingest_records": got["records"], "ingest_seconds": round(got["seconds"], 2),
        "ingest_rps": round(got["records"] / got["seconds"]),
        "ratio": round((got["records"] / got["seconds"]) / (n / base_s), 3), "target": 0.5,
        "peak_rss_mb": round(got["peak_rss_mb"]),
    }
    print(json.dumps({"evtx": results["evtx"]}), flush=True)

    big = build_json(work, args.json_bytes)
    warm([big])
    n, base_s = duckdb_scan(big)
    got = run_ingest(work / "json.duckdb", [big])
    results["json"] = {
        "bytes": big.stat().st_size, "baseline_records": n, "baseline_seconds": round(base_s, 2),
        "baseline_rps": round(n / base_s), "ingest_records": got["records"],
        "ingest_seconds": round(got["seconds"], 2), "ingest_rps": round(got["records"] / got["seconds"]),
        "ratio": round((got["records"] / got["seconds"]) / (n / base_s), 3), "target": 0.15,
        "peak_rss_mb": round(got["peak_rss_mb"]),
    }
    print(json.dumps({"json": results["json"]}), flush=True)

    if not args.skip_memory_4x:
        small = run_ingest(work / "mem1.duckdb", [root])
        root4, _ = replicate_evtx(work, int(args.evtx_records) * 4)
        large = run_ingest(work / "mem4.duckdb", [root4])
        results["memory"] = {
            "peak_rss_mb_1x": round(small["peak_rss_mb"]), "peak_rss_mb_4x": round(large["peak_rss_mb"]),
            "growth": round(large["peak_rss_mb"] / small["peak_rss_mb"] - 1, 3), "target_growth": 0.2,
            "target_peak_mb": 1024,
        }
        print(json.dumps({"memory": results["memory"]}), flush=True)
    os.makedirs(ROOT / "bench" / "out", exist_ok=True)
    (ROOT / "bench" / "out" / "ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
