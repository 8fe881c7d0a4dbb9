"""Ingest speed, memory and CPU, as ratios against lossless baselines measured in the same run.

    python bench/ingest.py [--runs 3] [--only evtx|json|memory] [--workdir /tmp/ashiato-bench]
                           [--evtx-records 400000] [--json-bytes 1e9] [--memory-runs N]
                           [--settle 300] [--ingest-args "--some-option value"]

Every ingest is `python -m tui.cli ingest CASE INPUT --no-dedupe --quiet` (plus --ingest-args) in a
fresh subprocess, into a new case, timed end to end (process start to exit: a queryable case);
records are counted in the case's `events` afterwards. While it runs, a sampler thread reads the
process tree's RSS (every 20 ms; the peak is reported) and CPU times; `cores` is the ingest tree's
user+system CPU seconds (getrusage of the waited-for child, exact) divided by its wall seconds,
`cores_sampled` the same from the psutil samples. Inputs are read once first (warm page cache), and
each run measures its baseline and then the ingest, so every ratio is taken within one run; the
figures reported are the medians over --runs runs (each run's figures are kept under "runs").
The machine may be shared: before each measurement the bench waits (up to --settle seconds) for
other processes to go quiet, and it reports the cores they used meanwhile (`others_cores_*`).

EVTX: the parseable files of ../shared/corpus/evtx replicated (symlinks under distinct names) to
about --evtx-records records. Baseline, a lossless floor: in this one process, parse every file
with `evtx` (PyEvtxParser(...).records_json(), one thread) and insert every raw JSON document into
a fresh DuckDB file, table `doc VARCHAR USING COMPRESSION zstd`, in 50k-row Arrow batches, then
CHECKPOINT and close (connect to close is timed). ratio = ingest records/s / floor records/s;
target >= 0.5.

JSON lines: the flat Security-Datasets files (NXLog shape) decompressed, concatenated and
replicated to about --json-bytes. Baseline, DuckDB's own typed load as a user would do it by hand:
connect to a fresh DuckDB file (default settings), `CREATE TABLE t AS SELECT * FROM read_json(file,
format='newline_delimited', sample_size=-1)`, CHECKPOINT, close (all timed). ratio = ingest
records/s / baseline records/s; target >= 0.8.

CPU: `cores` of the EVTX and JSON ingests; target >= 1.7 (of the 2 this machine has).

Memory: the peak RSS of the ingest at the defaults, for the EVTX set and the JSON file, and for 4x
each (the EVTX set replicated 4x as many times; the JSON file given 4 times via symlinks); target:
peak <= 2048 MB and 4x raises it by <= 25%. If `ashiato ingest --help` offers --memory-limit, the
JSON ingest is also run with `--memory-limit 256MB` and its time and peak set beside the default's.

One JSON line is printed per section; bench/out/ingest.json holds every section measured (with
--only, the sections not measured this time are kept from the previous file).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
OUT = ROOT / "bench" / "out" / "ingest.json"
FLOOR_BATCH = 50_000
SETTLE = 0.0  # --settle
TARGETS = {"evtx_ratio": 0.5, "json_ratio": 0.8, "cores": 1.7, "peak_mb": 2048, "growth": 0.25}


def evtx_files() -> list[Path]:
    return sorted(p for p in (CORPUS / "evtx").rglob("*.evtx") if p.stat().st_size > 0)


def _evtx_docs(files: list[Path]):  # type: ignore[no-untyped-def]
    """Every record's JSON document, skipping what the parser cannot read (damaged corpus files
    raise RuntimeError/OSError mid-iteration; iteration then goes on with the next chunk)."""
    import evtx

    for f in files:
        try:
            it = evtx.PyEvtxParser(str(f)).records_json()
        except (RuntimeError, OSError):
            continue
        while True:
            try:
                for rec in it:
                    yield rec["data"]
                break
            except (RuntimeError, OSError):
                continue


def count_evtx(files: list[Path]) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = sum(1 for _ in _evtx_docs(files))
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
        tmp = big.with_suffix(".partial")
        with open(tmp, "wb") as out:
            for _ in range(copies):
                out.write(data)
        tmp.rename(big)
    return big


def json_times(big: Path, n: int) -> Path:
    """A directory holding `big` n times (symlinks): n times the JSON input without n times the disk."""
    d = big.parent / f"{big.stem}-times{n}"
    d.mkdir(exist_ok=True)
    for i in range(n):
        link = d / f"{i:02d}_{big.name}"
        if not link.exists():
            link.symlink_to(big)
    return d


def warm(paths: list[Path]) -> None:
    """Read the inputs once so the baseline and the ingest both find them in the page cache:
    otherwise whichever runs first pays for the disk, and the ratio swings by 3x between runs."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def _fresh(path: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)


# -- baselines ---------------------------------------------------------------------------------------
def evtx_floor(files: list[Path], db: Path) -> tuple[int, float]:
    """The lossless EVTX floor: parse, store every document zstd-compressed, checkpoint. Records, seconds."""
    import duckdb
    import pyarrow as pa

    _fresh(db)
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE d (doc VARCHAR USING COMPRESSION zstd)")
    n = 0
    docs: list[str] = []

    def flush() -> None:
        batch = pa.table({"doc": pa.array(docs, pa.string())})  # noqa: F841 (DuckDB reads it by name)
        con.execute("INSERT INTO d SELECT doc FROM batch")
        docs.clear()

    for doc in _evtx_docs(files):
        docs.append(doc)
        if len(docs) >= FLOOR_BATCH:
            n += len(docs)
            flush()
    n += len(docs)
    flush()
    con.execute("CHECKPOINT")
    con.close()
    return n, time.perf_counter() - t0


def json_typed_load(path: Path, db: Path) -> tuple[int, float]:
    """DuckDB's own typed load of the file into a fresh DuckDB file, checkpointed. Records, seconds."""
    import duckdb

    _fresh(db)
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited', sample_size=-1)",
                [str(path)])
    con.execute("CHECKPOINT")
    con.close()
    seconds = time.perf_counter() - t0
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    con.close()
    return int(n), seconds


# -- the measured process ----------------------------------------------------------------------------
def _busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _mine() -> float:
    """CPU seconds of this process and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def settle(limit: float, quiet_cores: float = 0.3) -> float:
    """On a shared machine, wait (at most `limit` seconds) until the other processes use less than
    `quiet_cores` for 3 s running; the seconds waited."""
    t0 = time.perf_counter()
    calm = 0
    while calm < 3 and time.perf_counter() - t0 < limit:
        b, m = _busy(), _mine()
        time.sleep(1.0)
        calm = calm + 1 if (_busy() - b) - (_mine() - m) < quiet_cores else 0
    return time.perf_counter() - t0


class Others:
    """Cores used by processes other than this one and its children over a measurement: the
    benchmark shares the machine, and a busy neighbour skews every figure."""

    def __enter__(self) -> Others:
        self.t, self.b, self.m = time.perf_counter(), _busy(), _mine()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t
        self.cores = max(0.0, ((_busy() - self.b) - (_mine() - self.m)) / wall)


def _watch(cmd: list[str]) -> dict[str, Any]:
    """Run `cmd` (cwd: the repo); its stdout, wall seconds, peak RSS in MB of its process tree
    (sampled every 20 ms) and CPU cores busy (exact, from getrusage; and from the samples)."""
    others = Others().__enter__()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    cpu: dict[int, float] = {}  # pid -> user+system seconds, last seen
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        kids: list[psutil.Process] = []
        tick = 0
        while not done.is_set():
            try:
                t = root.cpu_times()
                cpu[root.pid] = t.user + t.system
                rss = root.memory_info().rss
            except psutil.Error:
                break
            if tick % 10 == 0:  # the tree, every 0.2 s (a /proc scan each time would cost CPU)
                try:
                    kids = root.children(recursive=True)
                except psutil.Error:
                    kids = []
            for k in kids:
                try:
                    rss += k.memory_info().rss
                    t = k.cpu_times()
                    cpu[k.pid] = t.user + t.system
                except psutil.Error:
                    pass
            peak = max(peak, rss)
            tick += 1
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    others.__exit__()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"out": out, "seconds": wall, "peak_rss_mb": peak / 2**20, "cores": used / wall,
            "cores_sampled": sum(cpu.values()) / wall, "cpu_s": used,
            "others_cores": others.cores}


def peak_rss(cmd: list[str]) -> tuple[str, float]:
    """Run `cmd`; its standard output and peak RSS in MB (psutil, sampled every 20 ms)."""
    got = _watch(cmd)
    return got["out"], got["peak_rss_mb"]


def run_ingest(case: Path, inputs: list[Path], extra: list[str] | None = None) -> dict[str, float]:
    """`ashiato ingest --no-dedupe` into a new case in a subprocess: wall seconds, records stored,
    peak RSS (MB) and CPU cores busy."""
    _fresh(case)
    cmd = [sys.executable, "-m", "tui.cli", "ingest", str(case), *map(str, inputs), "--no-dedupe", "--quiet",
           *(extra or [])]
    got = _watch(cmd)
    import duckdb

    con = duckdb.connect(str(case), read_only=True)
    records = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    con.close()
    return {"seconds": got["seconds"], "records": int(records), "peak_rss_mb": got["peak_rss_mb"],
            "cores": got["cores"], "cores_sampled": got["cores_sampled"], "others_cores": got["others_cores"]}


# -- sections ----------------------------------------------------------------------------------------
def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m = statistics.median(r[k] for r in runs)
            out[k] = round(m, 3) if isinstance(m, float) and abs(m) < 100 else round(m)
    return out


def _paired(name: str, baseline: Any, case: Path, inputs: list[Path], runs: int, extra: list[str],
            target: float) -> dict[str, Any]:
    per: list[dict[str, Any]] = []
    for r in range(runs):
        waited = settle(SETTLE)
        with Others() as base_others:
            n, base_s = baseline()
        got = run_ingest(case, inputs, extra)
        row = {"baseline_records": n, "baseline_seconds": round(base_s, 2), "baseline_rps": round(n / base_s),
               "ingest_records": got["records"], "ingest_seconds": round(got["seconds"], 2),
               "ingest_rps": round(got["records"] / got["seconds"]),
               "ratio": round((got["records"] / got["seconds"]) / (n / base_s), 3),
               "peak_rss_mb": round(got["peak_rss_mb"]), "cores": round(got["cores"], 2),
               "cores_sampled": round(got["cores_sampled"], 2),
               # cores used by other processes during the baseline and the ingest (shared machine)
               "others_cores_baseline": round(base_others.cores, 2),
               "others_cores_ingest": round(got["others_cores"], 2), "settle_waited_s": round(waited)}
        per.append(row)
        print(f"# {name} run {r + 1}/{runs}: {json.dumps(row)}", file=sys.stderr, flush=True)
    med = _median(per)
    return {**med, "target_ratio": target, "target_cores": TARGETS["cores"],
            "ratio_ok": med["ratio"] >= target, "cores_ok": med["cores"] >= TARGETS["cores"], "runs": per}


def evtx_section(work: Path, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    root, files = replicate_evtx(work, int(args.evtx_records))
    warm(files)
    return {"input": str(root), "files": len(files),
            **_paired("evtx", lambda: evtx_floor(files, work / "floor-evtx.duckdb"), work / "evtx.duckdb",
                      [root], args.runs, extra, TARGETS["evtx_ratio"])}


def json_section(work: Path, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    big = build_json(work, args.json_bytes)
    warm([big])
    return {"input": str(big), "bytes": big.stat().st_size,
            **_paired("json", lambda: json_typed_load(big, work / "typed-json.duckdb"), work / "json.duckdb",
                      [big], args.runs, extra, TARGETS["json_ratio"])}


def memory_section(work: Path, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    runs = args.memory_runs or args.runs
    root1, files1 = replicate_evtx(work, int(args.evtx_records))
    root4, _ = replicate_evtx(work, int(args.evtx_records) * 4)
    big = build_json(work, args.json_bytes)
    json4 = json_times(big, 4)
    warm([big, *files1])
    out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, one, four in (("evtx", root1, root4), ("json", big, json4)):
        got: dict[str, list[dict[str, float]]] = {"1x": [], "4x": []}
        for r in range(runs):
            for size, inp in (("1x", one), ("4x", four)):
                settle(SETTLE)
                try:
                    g = run_ingest(work / f"mem-{name}-{size}.duckdb", [inp], extra)
                except SystemExit as exc:  # a failed ingest is a finding of this section, not the end of the bench
                    print(f"# memory {name} {size} run {r + 1}/{runs}: {exc}", file=sys.stderr, flush=True)
                    failed[f"{name}_{size}"] = _last_error(str(exc))
                    continue
                got[size].append(g)
                print(f"# memory {name} {size} run {r + 1}/{runs}: records {g['records']}, "
                      f"{g['seconds']:.1f} s, peak {g['peak_rss_mb']:.0f} MB, {g['cores']:.2f} cores "
                      f"(others {g['others_cores']:.2f})",
                      file=sys.stderr, flush=True)
        if not got["1x"] or not got["4x"]:
            out[name] = {size: {k: round(v, 2) for k, v in got[size][0].items()} for size in got if got[size]}
            continue
        p1 = statistics.median(g["peak_rss_mb"] for g in got["1x"])
        p4 = statistics.median(g["peak_rss_mb"] for g in got["4x"])
        out[name] = {"records_1x": got["1x"][0]["records"], "records_4x": got["4x"][0]["records"],
                     "seconds_1x": round(statistics.median(g["seconds"] for g in got["1x"]), 2),
                     "seconds_4x": round(statistics.median(g["seconds"] for g in got["4x"]), 2),
                     "peak_rss_mb_1x": round(p1), "peak_rss_mb_4x": round(p4),
                     "growth": round(p4 / p1 - 1, 3), "runs": runs}
    whole = [v for v in out.values() if "growth" in v]
    peak = max((max(v["peak_rss_mb_1x"], v["peak_rss_mb_4x"]) for v in whole), default=None)
    growth = max((v["growth"] for v in whole), default=None)
    out.update({"failed": failed, "peak_rss_mb": peak, "growth": growth, "target_peak_mb": TARGETS["peak_mb"],
                "target_growth": TARGETS["growth"],
                "peak_ok": not failed and peak is not None and peak <= TARGETS["peak_mb"],
                "growth_ok": not failed and growth is not None and growth <= TARGETS["growth"]})
    return out


def _last_error(text: str) -> str:
    """The exception line of a traceback (DuckDB's own message), else the text's last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:500]
    return lines[-1][:500] if lines else ""


def memory_limit_section(work: Path, args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """The JSON ingest with `--memory-limit 256MB` beside the default, if the CLI has the option."""
    helptext = subprocess.run([sys.executable, "-m", "tui.cli", "ingest", "--help"], cwd=ROOT,
                              capture_output=True, text=True).stdout
    if "--memory-limit" not in helptext:
        return {"skipped": "`ashiato ingest` has no --memory-limit option yet"}
    big = build_json(work, args.json_bytes)
    warm([big])
    runs = args.memory_runs or args.runs
    out: dict[str, Any] = {}
    for label, more in (("default", []), ("256MB", ["--memory-limit", "256MB"])):
        got = [run_ingest(work / "memlimit.duckdb", [big], [*extra, *more]) for _ in range(runs)]
        out[label] = {"records": got[0]["records"],
                      "seconds": round(statistics.median(g["seconds"] for g in got), 2),
                      "peak_rss_mb": round(statistics.median(g["peak_rss_mb"] for g in got)),
                      "cores": round(statistics.median(g["cores"] for g in got), 2)}
    out["slowdown"] = round(out["256MB"]["seconds"] / out["default"]["seconds"], 3)
    out["rss_saved_mb"] = out["default"]["peak_rss_mb"] - out["256MB"]["peak_rss_mb"]
    return out


def _git() -> dict[str, Any]:
    """The commit measured, and the engine/CLI files that differ from it (uncommitted work)."""
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "engine", "tui").splitlines()]
    return {"git_head": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": dirty}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per section; medians are reported (default 3)")
    ap.add_argument("--only", choices=("evtx", "json", "memory"), action="append",
                    help="measure only this section (repeatable; memory includes --memory-limit)")
    ap.add_argument("--workdir", default="/tmp/ashiato-bench")
    ap.add_argument("--evtx-records", type=float, default=400_000)
    ap.add_argument("--json-bytes", type=float, default=1e9)
    ap.add_argument("--memory-runs", type=int, help="runs of the memory section (default: --runs)")
    ap.add_argument("--settle", type=float, default=300.0,
                    help="before each measurement wait up to this many seconds for other processes to go "
                         "quiet (< 0.3 cores); 0: do not wait (default 300)")
    ap.add_argument("--ingest-args", default="", help="extra arguments for every `ashiato ingest`, one string")
    args = ap.parse_args()
    global SETTLE
    SETTLE = args.settle
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.ingest_args)
    only = set(args.only or ("evtx", "json", "memory"))
    results: dict[str, Any] = {}
    if OUT.exists() and args.only:
        try:
            results = json.loads(OUT.read_text())
        except ValueError:
            results = {}
    results["meta"] = {"command": " ".join(shlex.quote(a) for a in sys.argv), "runs": args.runs,
                       "ingest_args": extra, "cpus": os.cpu_count(), "python": platform.python_version(),
                       "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **_git()}
    sections = [("evtx", evtx_section), ("json", json_section), ("memory", memory_section),
                ("memory_limit", memory_limit_section)]
    for name, fn in sections:
        if (name if name != "memory_limit" else "memory") not in only:
            continue
        t0 = time.perf_counter()
        results[name] = {**fn(work, args, extra), "section_seconds": round(time.perf_counter() - t0)}
        brief = {k: v for k, v in results[name].items() if k != "runs"}
        print(json.dumps({name: brief}), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
