"""How fast an ingest could be at best, with nothing normalised: the floor under bench/ingest.py.

    python bench/floor.py [--workdir /tmp/ashiato-bench]

Uses the inputs bench/ingest.py builds (run it once first for the JSON file). For each, in one run:
  baseline  the issue's baseline (EVTX: records_json() iteration; JSON: DuckDB's read_json_objects)
  store     the documents alone into a DuckDB file and checkpointed (lossless, nothing extracted)
  extract   one json_extract_string of 14 hot paths over the stored documents
and the ratios baseline / (baseline-side work + store [+ extract]) that an ingest keeping every
document in the case cannot beat. The EVTX parse is counted once, as in the baseline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb

EVTX_PATHS = ["$.Event.System.EventID", "$.Event.System.Computer", "$.Event.System.Channel",
              "$.Event.System.EventRecordID", '$.Event.System.TimeCreated."#attributes".SystemTime'] + [
    f"$.Event.EventData.{k}" for k in ("TargetUserName", "SubjectUserName", "LogonType", "IpAddress", "Image",
                                       "CommandLine", "ParentImage", "ProcessGuid", "TargetLogonId")]
JSON_PATHS = ["$.EventID", "$.Hostname", "$.Channel", "$.RecordNumber", "$.EventTime"] + [
    f"$.{k}" for k in ("TargetUserName", "SubjectUserName", "LogonType", "IpAddress", "Image", "CommandLine",
                       "ParentImage", "ProcessGuid", "TargetLogonId")]


def _listed(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _fresh(path: Path) -> duckdb.DuckDBPyConnection:
    for p in (path, Path(f"{path}.wal")):
        p.unlink(missing_ok=True)
    return duckdb.connect(str(path))


def evtx_floor(work: Path) -> dict[str, float]:
    import evtx
    import pyarrow as pa
    from ingest import replicate_evtx  # bench/ingest.py: the same copies, about 400k records

    _, files = replicate_evtx(work, 400_000)
    t = time.perf_counter()
    docs: list[str] = []
    for f in files:
        try:
            it = evtx.PyEvtxParser(str(f)).records_json()
        except (OSError, RuntimeError):
            continue
        while True:
            try:
                for rec in it:
                    docs.append(rec["data"])
                break
            except (RuntimeError, OSError):
                continue
    baseline = time.perf_counter() - t
    con = _fresh(work / "floor-evtx.duckdb")
    con.register("parsed", pa.table({"doc": pa.array(docs, pa.string())}))
    t = time.perf_counter()
    con.execute("CREATE TABLE d AS SELECT doc FROM parsed")
    con.execute("CHECKPOINT")
    store = time.perf_counter() - t
    t = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE k AS SELECT json_extract_string(doc, {_listed(EVTX_PATHS)}) FROM d")
    extract = time.perf_counter() - t
    return {"records": len(docs), "baseline_s": baseline, "store_s": store, "extract_s": extract,
            "ratio_store": baseline / (baseline + store), "ratio_store_extract": baseline / (baseline + store + extract)}


def json_floor(work: Path) -> dict[str, float]:
    files = sorted(work.glob("nxlog-x*.jsonl"))
    if not files:
        raise SystemExit(f"no JSON lines file under {work}: run bench/ingest.py first")
    src = str(files[-1]).replace("'", "''")
    con = duckdb.connect()
    baseline = float("inf")
    for _ in range(3):  # the first read of the file may come from disk, not the page cache
        t = time.perf_counter()
        n = con.execute(f"SELECT count(*) FROM read_json_objects('{src}')").fetchall()[0][0]
        baseline = min(baseline, time.perf_counter() - t)
    con = _fresh(work / "floor-json.duckdb")
    t = time.perf_counter()
    con.execute(f"CREATE TABLE d AS SELECT json::VARCHAR AS doc FROM read_json_objects('{src}')")
    con.execute("CHECKPOINT")
    store = time.perf_counter() - t
    t = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE k AS SELECT json_extract_string(doc, {_listed(JSON_PATHS)}) FROM d")
    extract = time.perf_counter() - t
    return {"records": n, "baseline_s": baseline, "store_s": store, "extract_s": extract,
            "ratio_store": baseline / store, "ratio_store_extract": baseline / (store + extract)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/ashiato-bench")
    work = Path(ap.parse_args().workdir)
    for name, fn, target in (("evtx", evtx_floor, 0.5), ("json", json_floor, 0.15)):
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in fn(work).items()}
        print(json.dumps({name: {**out, "target": target}}), flush=True)


if __name__ == "__main__":
    main()
