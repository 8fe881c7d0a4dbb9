"""Process lineage on a ~10-million-event case with >= 1 million process creations (issue 10's
targets), as ratios against baselines measured in the same run.

    python bench/lineage.py [--case /tmp/ashiato-bench-lineage.duckdb] [--events 10000000]
                            [--min-processes 1000000] [--runs 5] [--workdir /tmp/ashiato-bench-lineage]

CASE is reused when it exists, otherwise built as bench/sessions.py builds its case (the corpus,
replicated in SQL, each copy shifted by whole days with distinct eids and record ids, its LogonIds
given the copy number in bits 40 and up, then ordered), with two differences that matter to lineage:
  - each copy's ProcessGuids (process_guid, parent_guid, target_guid: the engine reads the typed
    columns only) get `f` and the copy number in the first 4 digits of their last group (the
    corpus has only `0000`/`0010` there), and Sysmon's UtcTime moves with the event's time. Without
    it every copy's processes would be the original's (a GUID is one node per host), and 10 million
    events would make barely more processes than the corpus does;
  - when whole copies give fewer than --min-processes process creations (Sysmon 1 + Security 4688:
    the corpus has ~2.5 % of them, so ~0.25 M in 10 M), fewer whole copies are made and the rest are
    copies of the process events alone (Sysmon PROCESS_SYSMON_IDS and Security 4688/4689: Sysmon's
    registry and image-load events, most of its volume, are left out so the case stays near
    --events), so the case has the events asked for and at least --min-processes creations.

The case's derived tables are rebuilt first whenever the engine on disk differs from the one that
built them (CASE.derived-engine holds its digest: lineage's VERSION does not change with each edit).
A build or an update that runs out of memory at the engine's default limit is reported as such and
measured again at each --memory-fallback limit in turn.

Measured, medians of runs:
  1. build: `lineage.build` from scratch (processes and process_events dropped, boots in place, in
     a transaction that is then rolled back: the case is not changed) in a fresh process with the
     engine's default memory limit, its peak RSS sampled; against the time an ingest of as many
     events takes at the rate `ashiato ingest` reaches in this run (bench/ingest.py's measure, via
     bench/sessions.py's ingest_rate). Target: build_s / (events / ingest_rate) <= 0.20. Shown
     beside it: one whole `derived.refresh(case, full=True)` (boots, sessions, lineage) in a fresh
     process, with its lineage part.
  2. incremental: a copy of the case gets one small evtx_dump JSON-lines file (--inc-processes
     processes on the host with the most processes, after the case's last event: Sysmon 1 for each,
     a 4688 of the same process for half of them, 4688-only children, a few exits; the first one a
     child of a process already in the case), ingested as `ashiato ingest` does; the lineage part of
     the ingest's derived refresh (lineage_update.update, and lineage.build for a host whose boots
     changed) against a full `lineage.build` of that same copy. Target:
     proportional to the file, judged here as <= 5 % of the full build. Checked: the updated
     `processes` equals the rebuilt one (node, parent, edge, end of every row; the other columns and
     process_events compared too and shown).
  3. `ashiato tree CASE --process KEY --format text` as a subprocess, KEY the process with the most
     descendants among those with an ancestry at least --min-depth deep; baseline a process that
     only starts Python and opens the case. Target: the command <= 1 s.
  4. the TUI (tui/screens/tree.py; skipped with the reason printed while it does not exist), in a
     fresh process: `app.show_tree(node)`, node the root process with the most children on the host
     with the most processes, until `screen.ready` and no load in flight; then, the tree opened at
     the parent of the node of that host with the most children (among its parent's first 200) and
     the cursor moved to it, `space` until the tree's `pending` is 0 and the children are there
     (Pilot's own per-key cost, a key bound to nothing, subtracted); then the process RSS. The first
     run is shown apart (cold), the others' median judged. Targets: first level <= 300 ms, expand
     <= 100 ms, RSS <= 500 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSMON = "Microsoft-Windows-Sysmon/Operational"
CREATION_SQL = f"((channel = '{SYSMON}' AND event_id = 1) OR (channel = 'Security' AND event_id = 4688))"
# What a process-only copy holds: creations, exits, and what lineage links by GUID besides the
# high-volume registry (12-14) and image-load (7) events.
PROCESS_SYSMON_IDS = (1, 2, 3, 5, 8, 10, 11, 15, 17, 18, 22, 23, 26)
PROCESS_SQL = (f"((channel = '{SYSMON}' AND event_id IN {PROCESS_SYSMON_IDS}) "
               "OR (channel = 'Security' AND event_id IN (4688, 4689)))")
GUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TARGETS = {"build_ratio": 0.20, "inc_ratio": 0.05, "command_s": 1.0, "tui_open_ms": 300.0,
           "tui_expand_ms": 100.0, "tui_rss_mb": 500.0}


def _bench_module(name: str) -> Any:
    """bench/NAME.py (bench/ is no package, and bench/tui.py would shadow the `tui` package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SESSIONS = _bench_module("sessions")
emit = SESSIONS.emit
peak_rss = SESSIONS.peak_rss
timed = SESSIONS.timed
engine_state = SESSIONS.engine_state


# -- the case -----------------------------------------------------------------------------------------------
def plan(base: int, related: int, creations: int, events: int, min_processes: int) -> tuple[int, int]:
    """(whole copies, process-only copies), the original counted as a whole copy: at least
    `events` events and `min_processes` creations, as few events as that allows."""
    whole = max(1, -(-events // base))
    if creations == 0 or whole * creations >= min_processes:
        return whole, 0
    together = -(-min_processes // creations)
    whole = max(1, -(-(events - together * related) // (base - related)))
    whole = min(whole, together)
    return whole, together - whole


def _guid(col: str, k: int) -> str:
    return (f"CASE WHEN regexp_full_match({col}, '{GUID_RE}') "
            f"THEN left({col}, 24) || 'f' || printf('%03x', {k}) || substr({col}, 29) ELSE {col} END")


def build_case(out: Path, events: int, min_processes: int) -> None:
    from engine import Case, derived
    from engine.ingest import ingest

    corpus = _bench_module("bigcase").CORPUS
    lid = SESSIONS._lid
    for p in (out, Path(f"{out}.wal")):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with Case(out, memory_limit="4GB") as case:
        ingest(case, [corpus / "evtx", corpus / "ndjson"])
        con = case.con
        base, related, creations = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {PROCESS_SQL}), count(*) FILTER (WHERE {CREATION_SQL}) "
            "FROM events").fetchall()[0]
        whole, extra = plan(base, related, creations, events, min_processes)
        if whole + extra > 4096:
            raise SystemExit(f"{whole + extra} copies: the GUID scheme holds 4095")
        print(f"base {base:,} events ({related:,} process events, {creations:,} creations): {whole} whole copies, "
              f"{extra} of the process events alone", file=sys.stderr, flush=True)
        con.execute("CREATE TEMP TABLE base_ev AS SELECT * FROM events")
        # As bench/bigcase.py: documents over 64 KiB stay in the first copy only.
        con.execute("""CREATE TEMP TABLE base_d AS SELECT eid, data, raw FROM event_data
                       WHERE coalesce(length(raw), 0) + coalesce(length(data::VARCHAR), 0) < 65536""")
        for k in range(1, whole + extra):
            only = f"WHERE {PROCESS_SQL}" if k >= whole else ""
            with case.transaction():
                shift = k << 44
                con.execute(f"""INSERT INTO events SELECT * REPLACE (
                        eid + {shift} AS eid, NULL AS pos, ts + INTERVAL ({k}) DAY AS ts,
                        utc_time + INTERVAL ({k}) DAY AS utc_time,
                        record_id + CAST({k} AS BIGINT) * 100000000 AS record_id,
                        {lid('target_logon_id', k)} AS target_logon_id,
                        {lid('subject_logon_id', k)} AS subject_logon_id,
                        {lid('linked_logon_id', k)} AS linked_logon_id,
                        {_guid('process_guid', k)} AS process_guid,
                        {_guid('parent_guid', k)} AS parent_guid,
                        {_guid('target_guid', k)} AS target_guid) FROM base_ev {only}""")
                docs = "" if not only else f"WHERE eid IN (SELECT eid FROM base_ev {only})"
                con.execute(f"INSERT INTO event_data SELECT eid + {shift}, data, raw FROM base_d {docs}")
            if k % 20 == 0:
                print(f"  copy {k}/{whole + extra} at {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        case.reorder()
        print(f"  ordered at {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        # The copies added no sources, so the derived tables would look current: build them.
        derived.refresh(case, full=True)
        n = case.event_count()
    Path(f"{out}.derived-engine").write_text(engine_state().split()[-1] + "\n")
    print(f"{out}: {n:,} events in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)


def describe(case_path: Path, min_depth: int) -> dict[str, Any]:
    from engine import Case, lineage

    with Case(case_path) as case:  # read-write: brings the derived tables up to date if they are not
        con = case.con
        n, creations = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {CREATION_SQL}) FROM events").fetchall()[0]
        by_id = dict(con.execute(f"SELECT channel || ' ' || event_id, count(*) FROM events WHERE {CREATION_SQL} "
                                 "GROUP BY 1").fetchall())
        n_proc, n_hosts = con.execute("SELECT count(*), count(DISTINCT host) FROM processes").fetchall()[0]
        edges = dict(con.execute("SELECT edge, count(*) FROM processes GROUP BY 1").fetchall())
        merged = con.execute("SELECT count(*) FROM processes WHERE len(sources) = 2").fetchall()[0][0]
        links = con.execute("SELECT count(*) FROM process_events").fetchall()[0][0]
        host, host_n = con.execute("SELECT host, count(*) FROM processes GROUP BY host "
                                   "ORDER BY count(*) DESC, host LIMIT 1").fetchall()[0]
        host_roots = con.execute("SELECT count(*) FROM processes WHERE host = ? AND parent IS NULL",
                                 [host]).fetchall()[0][0]
        root = con.execute("SELECT node, children, image FROM processes WHERE host = ? AND parent IS NULL "
                           "ORDER BY children DESC, node LIMIT 1", [host]).fetchall()[0]
        # The node to expand in the TUI: the most children on that host, shown when its parent is
        # opened (among the parent's first chunk of children).
        expand = con.execute("""SELECT node, parent, children FROM (
                SELECT node, parent, children, row_number() OVER (PARTITION BY parent ORDER BY start, node) AS rank
                FROM processes WHERE host = ? AND parent IS NOT NULL) WHERE rank <= 200
            ORDER BY children DESC, node LIMIT 1""", [host]).fetchall()[0]
        # Every node's depth, and every node's number of descendants (each node counted under each
        # of its ancestors).
        con.execute("""CREATE OR REPLACE TEMP TABLE _depth AS
            WITH RECURSIVE down(node, depth) AS (
                SELECT node, 0 FROM processes WHERE parent IS NULL
                UNION ALL SELECT p.node, d.depth + 1 FROM down d JOIN processes p ON p.parent = d.node
                WHERE d.depth < 10000)
            SELECT node, max(depth) AS depth FROM down GROUP BY node""")
        con.execute("""CREATE OR REPLACE TEMP TABLE _below AS
            WITH RECURSIVE up(anc, depth) AS (
                SELECT parent, 1 FROM processes WHERE parent IS NOT NULL
                UNION ALL SELECT p.parent, up.depth + 1 FROM up JOIN processes p ON p.node = up.anc
                WHERE p.parent IS NOT NULL AND up.depth < 10000)
            SELECT anc AS node, count(*) AS below FROM up GROUP BY anc""")
        max_depth = con.execute("SELECT max(depth) FROM _depth").fetchall()[0][0]
        want = min(min_depth, int(max_depth or 0))
        pick = con.execute("""SELECT p.node, p.host, p.boot, p.pid, p.process_guid, d.depth, b.below, p.image
                              FROM processes p JOIN _depth d USING (node) JOIN _below b USING (node)
                              WHERE d.depth >= ? ORDER BY b.below DESC, d.depth DESC, p.node LIMIT 1""",
                           [want]).fetchall()[0]
        max_ts = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
    key = lineage.key_of({"node": pick[0], "host": pick[1], "boot": pick[2], "pid": pick[3], "process_guid": pick[4]})
    return {"events": int(n), "creations": int(creations), "creations_by_kind": {k: int(v) for k, v in sorted(by_id.items())},
            "processes": int(n_proc), "process_hosts": int(n_hosts),
            "edges": {str(k): int(v) for k, v in sorted(edges.items())}, "merged_nodes": int(merged),
            "process_event_links": int(links), "busiest_host": host, "busiest_host_processes": int(host_n),
            "busiest_host_roots": int(host_roots), "root_node": int(root[0]), "root_children": int(root[1]),
            "root_image": root[2], "expand_node": int(expand[0]), "expand_parent": int(expand[1]),
            "expand_children": int(expand[2]), "max_depth": int(max_depth or 0), "key": key, "key_node": int(pick[0]),
            "key_depth": int(pick[5]), "key_descendants": int(pick[6]), "key_image": pick[7],
            "last_ts": max_ts, "file_mb": round(case_path.stat().st_size / 2**20)}


# -- 1. full build against the ingest rate --------------------------------------------------------------
_BUILD_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from engine import Case, lineage
case = Case(sys.argv[2], **({"memory_limit": sys.argv[3]} if sys.argv[3] else {}))
con = case.con
con.execute("BEGIN TRANSACTION")
con.execute("DROP TABLE IF EXISTS process_events")
con.execute("DROP TABLE IF EXISTS processes")
t0 = time.perf_counter()
lineage.build(con)
seconds = time.perf_counter() - t0
n = con.execute("SELECT count(*) FROM processes").fetchall()[0][0]
con.execute("ROLLBACK")
case.close()
print(seconds, n)
"""

_REFRESH_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from engine import Case, derived, lineage
spent = []
build = lineage.build
def timed_build(*a, **k):
    t0 = time.perf_counter()
    build(*a, **k)
    spent.append(time.perf_counter() - t0)
lineage.build = timed_build
case = Case(sys.argv[2], **({"memory_limit": sys.argv[3]} if sys.argv[3] else {}))
total = derived.refresh(case, full=True)
case.close()
print(total, sum(spent))
"""


def _with_memory(code: str, case_path: Path, limits: tuple[str, ...], start: str = "") -> tuple[str, float, str, list[str]]:
    """Run a child (`code` CASE_ROOT CASE LIMIT) at the engine's default memory limit ("") and, when
    DuckDB runs out of memory there, at each larger limit in turn: its output, peak RSS, the limit
    it succeeded at, and the failures before."""
    failed: list[str] = []
    tried = ("", *limits)
    for limit in tried[tried.index(start) if start in tried else 0:]:
        try:
            out, peak = peak_rss([sys.executable, "-c", code, str(ROOT), str(case_path), limit])
        except SystemExit as exc:
            text = str(exc)
            if "OutOfMemory" not in text:
                raise
            lines = [ln for ln in text.splitlines() if "Out of Memory" in ln or "lineage.py" in ln]
            failed.append(f"{limit or 'engine default'}: {' / '.join(ln.strip() for ln in lines[-3:])}")
            print(f"  out of memory at {limit or 'the engine default memory limit'}", file=sys.stderr, flush=True)
            continue
        return out, peak, limit, failed
    raise SystemExit("out of memory at every limit tried:\n" + "\n".join(failed))


def lineage_build(case_path: Path, limits: tuple[str, ...], start: str = "") -> dict[str, Any]:
    """lineage.build from scratch in a fresh process, rolled back: seconds, processes built, peak RSS
    in MB, the memory limit it ran at ("" the engine's default), starting at `start`."""
    out, peak, limit, failed = _with_memory(_BUILD_CHILD, case_path, limits, start)
    seconds, n = out.strip().splitlines()[-1].split()
    return {"s": float(seconds), "n": int(n), "rss": peak, "limit": limit, "oom": failed}


def full_refresh(case_path: Path, limits: tuple[str, ...], start: str = "") -> dict[str, Any]:
    """derived.refresh(case, full=True) in a fresh process: seconds, of which lineage, peak RSS."""
    out, peak, limit, failed = _with_memory(_REFRESH_CHILD, case_path, limits, start)
    total, lin = out.strip().splitlines()[-1].split()
    return {"s": float(total), "lineage_s": float(lin), "rss": peak, "limit": limit, "oom": failed}


def current_derived(case_path: Path) -> bool:
    """Rebuild the case's derived tables when the engine on disk is not the one that built them (the
    version in `meta` does not change with every edit): a sidecar file holds the engine's digest.
    True when it rebuilt."""
    from engine import Case, derived

    side = Path(f"{case_path}.derived-engine")
    digest = engine_state().split()[-1]
    if side.exists() and side.read_text().strip() == digest:
        return False
    print(f"engine {digest} did not build {case_path}'s derived tables: rebuilding them", file=sys.stderr, flush=True)
    with Case(case_path, memory_limit="4GB") as case:
        derived.refresh(case, full=True)
    side.write_text(digest + "\n")
    return True


# -- 2. incremental -----------------------------------------------------------------------------------------
def _doc(rid: int, event_id: int, when: datetime, host: str, data: dict[str, Any], *, sysmon: bool) -> dict[str, Any]:
    """One event in evtx_dump's JSON layout (tests/conftest.py evtx_doc)."""
    provider = ({"Name": "Microsoft-Windows-Sysmon", "Guid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"} if sysmon
                else {"Name": "Microsoft-Windows-Security-Auditing"})
    return {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                      "System": {"Provider": {"#attributes": provider}, "EventID": event_id, "Level": 4 if sysmon else 0,
                                 "TimeCreated": {"#attributes": {"SystemTime": f"{when:%Y-%m-%dT%H:%M:%S.%f}Z"}},
                                 "EventRecordID": rid, "Channel": SYSMON if sysmon else "Security", "Computer": host},
                      "EventData": data}}


def process_file(path: Path, host: str, start: datetime, n: int, anchor: dict[str, Any]) -> int:
    """evtx_dump JSON lines: n processes on `host` from `start`, the first a child of `anchor` (a
    process of the case: guid, pid, image), each later one a child of an earlier one (4 a parent).
    Sysmon 1 for each, a 4688 of the same process for every other, a 4688-only child of every
    fifth, Sysmon 5 / 4689 for some. Sysmon PIDs in decimal, 4688's in hex, as Windows writes them."""
    docs: list[dict[str, Any]] = []
    rid = 910_000_000
    user, domain, luid = "bench", "BENCH", "0x3e7000be"
    procs: list[tuple[str, int, str, str]] = []  # guid, pid, image, command line
    images = ("C:\\Windows\\System32\\cmd.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
              "C:\\Windows\\System32\\whoami.exe", "C:\\Windows\\System32\\net.exe", "C:\\Windows\\System32\\rundll32.exe")
    parent_of = [(str(anchor["guid"]), int(anchor["pid"]), str(anchor["image"]), str(anchor["command_line"] or ""))]

    def nxt() -> int:
        nonlocal rid
        rid += 1
        return rid

    for i in range(n):
        when = start + timedelta(seconds=2 * i)
        parent = parent_of[0] if i == 0 else procs[(i - 1) // 4]
        guid = f"{{BE1C0000-0000-4000-8000-{0xF00000000000 + i:012X}}}"
        pid = 0x7000 + 4 * i
        image = images[i % len(images)]
        cmd = f'"{image}" /c bench step {i}'
        procs.append((guid, pid, image, cmd))
        docs.append(_doc(nxt(), 1, when, host, {
            "RuleName": "-", "UtcTime": f"{when - timedelta(milliseconds=2):%Y-%m-%d %H:%M:%S.%f}"[:-3],
            "ProcessGuid": guid, "ProcessId": str(pid), "Image": image, "FileVersion": "10.0", "Description": "-",
            "Product": "-", "Company": "Microsoft Corporation", "OriginalFileName": image.rsplit("\\", 1)[-1],
            "CommandLine": cmd, "CurrentDirectory": "C:\\Windows\\system32\\", "User": f"{domain}\\{user}",
            "LogonGuid": "{BE1C0000-0000-0000-be00-3e7000000000}", "LogonId": luid, "TerminalSessionId": "1",
            "IntegrityLevel": "High", "Hashes": "SHA256=" + "0" * 64, "ParentProcessGuid": parent[0],
            "ParentProcessId": str(parent[1]), "ParentImage": parent[2], "ParentCommandLine": parent[3],
            "ParentUser": f"{domain}\\{user}"}, sysmon=True))
        if i % 2 == 0:
            docs.append(_doc(nxt(), 4688, when + timedelta(milliseconds=300), host, {
                "SubjectUserSid": "S-1-5-21-1-2-3-1107", "SubjectUserName": user, "SubjectDomainName": domain,
                "SubjectLogonId": luid, "NewProcessId": f"0x{pid:x}", "NewProcessName": image,
                "TokenElevationType": "%%1937", "ProcessId": f"0x{parent[1]:x}", "CommandLine": cmd,
                "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-", "TargetLogonId": "0x0",
                "ParentProcessName": parent[2], "MandatoryLabel": "S-1-16-12288"}, sysmon=False))
        if i % 5 == 4:  # a child only 4688 saw, which exits
            cpid = 0x9000 + 4 * i
            child = "C:\\Windows\\System32\\conhost.exe"
            docs.append(_doc(nxt(), 4688, when + timedelta(milliseconds=700), host, {
                "SubjectUserSid": "S-1-5-21-1-2-3-1107", "SubjectUserName": user, "SubjectDomainName": domain,
                "SubjectLogonId": luid, "NewProcessId": f"0x{cpid:x}", "NewProcessName": child,
                "TokenElevationType": "%%1937", "ProcessId": f"0x{pid:x}", "CommandLine": f"{child} 0xffffffff -ForceV1",
                "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-", "TargetLogonId": "0x0",
                "ParentProcessName": image, "MandatoryLabel": "S-1-16-12288"}, sysmon=False))
            docs.append(_doc(nxt(), 4689, when + timedelta(seconds=1, milliseconds=500), host, {
                "SubjectUserSid": "S-1-5-21-1-2-3-1107", "SubjectUserName": user, "SubjectDomainName": domain,
                "SubjectLogonId": luid, "Status": "0x0", "ProcessId": f"0x{cpid:x}", "ProcessName": child}, sysmon=False))
        if i % 7 == 6:  # a leaf that ends
            docs.append(_doc(nxt(), 5, when + timedelta(seconds=1), host, {
                "RuleName": "-", "UtcTime": f"{when + timedelta(seconds=1):%Y-%m-%d %H:%M:%S.%f}"[:-3],
                "ProcessGuid": guid, "ProcessId": str(pid), "Image": image}, sysmon=True))
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return len(docs)


_COMPARE = ("node", "parent", "edge", '"end"')
_ALL = ("node", "host", "boot", "process_guid", "pid", "image", "command_line", '"user"', "logon_id", "start",
        '"end"', "end_reason", "parent", "parent_guid", "parent_pid", "parent_image", "parent_start", "edge",
        "edge_note", "sources", "sysmon_eid", "security_eid", "children", "marks", "subtree_marks", "events",
        "network", "files", "registry", "image_loads", "dns", "pipes", "process_access", "lsass_access",
        "lsass_masks", "accessed_by")


def _diff(con: Any, a: str, b: str, cols: tuple[str, ...]) -> int:
    c = ", ".join(cols)
    return int(con.execute(f"SELECT (SELECT count(*) FROM (SELECT {c} FROM {a} EXCEPT ALL SELECT {c} FROM {b})) + "
                           f"(SELECT count(*) FROM (SELECT {c} FROM {b} EXCEPT ALL SELECT {c} FROM {a}))").fetchall()[0][0])


def _one_incremental(copy: Path, evidence: Path, memory_limit: str) -> dict[str, Any]:
    """Ingest `evidence` into `copy` as `ashiato ingest` does (the engine's default memory limit),
    timing its derived refresh and the lineage part of it; then a full lineage build of the updated
    copy (rolled back), timed and compared."""
    from engine import Case, derived, lineage, lineage_update
    from engine.ingest import ingest

    got: dict[str, Any] = {"refresh_s": 0.0, "lineage_s": 0.0, "lineage_epochs": [], "lineage_rebuilt_hosts": []}
    build, update = lineage.build, lineage_update.update

    def timed_build(cur: Any, **kw: Any) -> None:  # a host whose boots changed
        t0 = time.perf_counter()
        build(cur, **kw)
        got["lineage_s"] += time.perf_counter() - t0
        got["lineage_rebuilt_hosts"] += [h for h, _ in kw.get("epochs") or []]

    def timed_update(cur: Any, epochs: Any, *a: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        update(cur, epochs, *a, **kw)
        got["lineage_s"] += time.perf_counter() - t0
        got["lineage_epochs"] += list(epochs)

    with Case(copy, **({"memory_limit": memory_limit} if memory_limit else {})) as case:
        def timed_refresh() -> None:
            t0 = time.perf_counter()
            derived.refresh(case)
            got["refresh_s"] += time.perf_counter() - t0

        case.refresh_derived = timed_refresh  # type: ignore[method-assign]
        lineage.build = timed_build  # type: ignore[assignment]
        lineage_update.update = timed_update  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            report = ingest(case, [evidence])
            got["ingest_s"] = time.perf_counter() - t0
        finally:
            lineage.build = build  # type: ignore[assignment]
            lineage_update.update = update  # type: ignore[assignment]
        assert report.files and report.files[0].status == "ingested", report.files
        con = case.con
        got["processes_after"] = int(con.execute("SELECT count(*) FROM processes").fetchall()[0][0])
        con.execute("CREATE OR REPLACE TEMP TABLE _updated AS SELECT * FROM processes")
        con.execute("CREATE OR REPLACE TEMP TABLE _updated_pe AS SELECT * FROM process_events")
        con.execute("BEGIN TRANSACTION")
        con.execute("DROP TABLE process_events")
        con.execute("DROP TABLE processes")
        t0 = time.perf_counter()
        build(con)
        got["full_s"] = time.perf_counter() - t0
        got["diff_rows"] = _diff(con, "_updated", "processes", _COMPARE)
        got["diff_rows_all_columns"] = _diff(con, "_updated", "processes", _ALL)
        got["diff_process_events"] = _diff(con, "_updated_pe", "process_events", ("eid", "node", "role"))
        con.execute("ROLLBACK")
    return got


def incremental(case_path: Path, work: Path, info: dict[str, Any], n_processes: int, runs: int,
                build_s: float, limits: tuple[str, ...]) -> dict[str, Any]:
    from engine import Case

    host = info["busiest_host"]
    with Case(case_path, read_only=True) as case:
        row = case.cursor().execute(
            """SELECT process_guid, pid, image, command_line FROM processes
               WHERE host = ? AND process_guid IS NOT NULL AND "end" IS NULL
               ORDER BY start DESC, node DESC LIMIT 1""", [host]).fetchall()[0]
    anchor = {"guid": "{" + row[0].upper() + "}", "pid": row[1], "image": row[2], "command_line": row[3]}
    start = info["last_ts"].replace(tzinfo=None) + timedelta(hours=1)
    evidence = work / f"bench-processes-{os.getpid()}.jsonl"
    n_events = process_file(evidence, host, start, n_processes, anchor)
    runs_out: list[dict[str, Any]] = []
    errors: list[str] = []
    tried = ("", *limits)
    first = 0
    for _ in range(runs):
        # The engine's default memory limit, then larger ones if it runs out (later runs start at
        # the one the first got through at).
        for limit in tried[first:]:
            copy = work / f"incremental-{os.getpid()}.duckdb"  # two runs at once must not share it
            Path(f"{copy}.wal").unlink(missing_ok=True)
            shutil.copyfile(case_path, copy)
            try:
                runs_out.append({**_one_incremental(copy, evidence, limit), "limit": limit or "engine default"})
                first = tried.index(limit)
                break
            except duckdb.Error as exc:  # reported as a result, not a crash of the whole run
                import traceback

                where = [f"{Path(f.filename).name}:{f.name}" for f in traceback.extract_tb(exc.__traceback__)
                         if "/engine/" in f.filename]
                errors.append(f"{limit or 'engine default'}: {type(exc).__name__} in {where[-1] if where else '?'}: "
                              f"{str(exc).splitlines()[0]}")
                print(f"  incremental: {errors[-1]}", file=sys.stderr, flush=True)
                if not isinstance(exc, duckdb.OutOfMemoryException):
                    break
            finally:
                copy.unlink(missing_ok=True)
                Path(f"{copy}.wal").unlink(missing_ok=True)
    evidence.unlink(missing_ok=True)
    out: dict[str, Any] = {"host": host, "host_processes": info["busiest_host_processes"],
                           "host_share": round(info["busiest_host_processes"] / info["processes"], 4),
                           "file_events": n_events, "file_processes": n_processes, "runs": runs, "failed": errors}
    if not runs_out:
        return out
    lin = statistics.median(r["lineage_s"] for r in runs_out)
    full = statistics.median(r["full_s"] for r in runs_out)
    out.update({
        "ingest_s": round(statistics.median(r["ingest_s"] for r in runs_out), 2),
        "derived_refresh_s": round(statistics.median(r["refresh_s"] for r in runs_out), 3),
        "lineage_s": round(lin, 3), "lineage_all_s": [round(r["lineage_s"], 3) for r in runs_out],
        "lineage_epochs": runs_out[0]["lineage_epochs"], "lineage_rebuilt_hosts": runs_out[0]["lineage_rebuilt_hosts"],
        "full_build_same_copy_s": round(full, 2), "ratio": round(lin / full, 4),
        "ratio_to_step1_build": round(lin / build_s, 4),
        "processes_added": runs_out[0]["processes_after"] - info["processes"],
        "diff_rows": max(r["diff_rows"] for r in runs_out),
        "diff_rows_all_columns": max(r["diff_rows_all_columns"] for r in runs_out),
        "diff_process_events": max(r["diff_process_events"] for r in runs_out),
        "equals_full_rebuild": all(r["diff_rows"] == 0 for r in runs_out),
        "memory_limit": sorted({r["limit"] for r in runs_out})})
    return out


# -- 3. the command -----------------------------------------------------------------------------------------
def command(case_path: Path, key: str, runs: int) -> dict[str, Any]:
    py = sys.executable
    open_only = [py, "-c", f"from engine import Case; Case({str(case_path)!r}, read_only=True).cursor()"]
    cmd = [py, "-m", "tui.cli", "tree", str(case_path), "--process", key, "--format", "text"]
    base, full, lines = [], [], 0
    env = {**os.environ, "COLUMNS": "200"}
    for _ in range(runs):  # interleaved, so both see the same machine
        base.append(timed(open_only)[0])
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        full.append(time.perf_counter() - t0)
        lines = done.stdout.count(b"\n")
    b, f = statistics.median(base), statistics.median(full)
    from engine import Case, lineage

    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        query_s = []
        for _ in range(runs):
            t0 = time.perf_counter()
            node = lineage.find(cur, key)
            assert node is not None
            lineage.ancestors(cur, node)
            lineage.descendants(cur, node)
            query_s.append(time.perf_counter() - t0)
    return {"key": key, "lines": lines, "command_s": round(f, 3), "open_case_s": round(b, 3),
            "engine_s": round(f - b, 3), "query_in_process_s": round(statistics.median(query_s), 3),
            "ratio_to_open": round(f / b, 2), "command_all_s": [round(x, 3) for x in full],
            "target_command_s": TARGETS["command_s"], "runs": runs}


# -- 4. the TUI (in its own process) ------------------------------------------------------------------------
def tui_missing() -> str | None:
    if not (ROOT / "tui" / "screens" / "tree.py").exists():
        return "tui/screens/tree.py does not exist yet"
    return None


def _tree_ready(app: Any) -> bool:
    from tui.screens.tree import ProcessTreeScreen

    screen = app.screen
    if not isinstance(screen, ProcessTreeScreen) or not screen.is_mounted or not screen.ready:
        return False
    tree = screen.query_one("ProcessTree")
    return bool(tree.pending == 0 and tree.root.children)


def _loaded(tnode: Any) -> bool:
    """`tnode`'s first chunk of children is in the tree (no "loading…" row left)."""
    from tui.screens.tree import ProcessItem

    kids = list(tnode.children)
    return bool(kids) and any(isinstance(c.data, ProcessItem) for c in kids) and all(c.data is not None for c in kids)


def _find(tnode: Any, node: int) -> Any:
    from tui.screens.tree import ProcessItem

    for c in tnode.children:
        if isinstance(c.data, ProcessItem):
            if c.data.node == node:
                return c
            found = _find(c, node)
            if found is not None:
                return found
    return None


async def tui_measure(case_path: Path, nodes: tuple[int, int, int], runs: int) -> dict[str, Any]:
    """`nodes`: the root to open, the node to expand and its parent (opened to show it)."""
    import psutil

    from tui.app import AshiatoApp
    from tui.screens.tree import ProcessItem

    root, expand, expand_parent = nodes
    wait = SESSIONS._wait
    overhead: list[float] = []
    open_s: list[float] = []
    open_parent_s: list[float] = []
    expand_s: list[float] = []
    shown = expanded = 0
    app = AshiatoApp(case_path, user_keymap=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait(lambda: SESSIONS._timeline_ready(app), pilot)
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            await pilot.press("f23")  # bound to nothing: what Pilot itself costs
            await pilot.pause()
            overhead.append(time.perf_counter() - t0)
            # The root: until its first level is shown.
            t0 = time.perf_counter()
            app.show_tree(root)
            await wait(lambda: _tree_ready(app), pilot)
            open_s.append(time.perf_counter() - t0)
            tree = app.screen.query_one("ProcessTree")
            top = _find(tree.root, root)
            shown = sum(1 for c in top.children if isinstance(c.data, ProcessItem))
            await pilot.press("q")
            await wait(lambda: SESSIONS._timeline_ready(app), pilot)
            # The node with the most children: its parent opened, the cursor on it, space.
            t0 = time.perf_counter()
            app.show_tree(expand_parent)
            await wait(lambda: _tree_ready(app), pilot)
            open_parent_s.append(time.perf_counter() - t0)
            tree = app.screen.query_one("ProcessTree")
            target = _find(tree.root, expand)
            if target is None:
                raise SystemExit(f"node {expand} is not shown under {expand_parent}")
            assert not target.is_expanded and not _loaded(target)
            tree.move_cursor(target)
            await pilot.pause()
            assert tree.cursor_node is target, "the cursor did not move to the node to expand"
            t0 = time.perf_counter()
            await pilot.press("space")
            await wait(lambda t=tree, n=target: t.pending == 0 and n.is_expanded and _loaded(n), pilot)
            expand_s.append(time.perf_counter() - t0)
            expanded = sum(1 for c in target.children if isinstance(c.data, ProcessItem))
            await pilot.press("q")
            await wait(lambda: SESSIONS._timeline_ready(app), pilot)
        rss = psutil.Process().memory_info().rss / 2**20
    over = statistics.median(overhead)
    # show_tree is a call, not a key press: no Pilot overhead to subtract from the opens.
    return {"root": root, "first_level_children_shown": shown, "expand_node": expand,
            "expanded_children_shown": expanded,
            "first_open_ms": round(open_s[0] * 1000), "open_ms": round(statistics.median(open_s[1:]) * 1000),
            "open_all_ms": [round(x * 1000) for x in open_s],
            "open_parent_ms": round(statistics.median(open_parent_s[1:]) * 1000),
            "first_expand_ms": round(max(0.0, expand_s[0] - over) * 1000),
            "expand_ms": round(max(0.0, statistics.median(expand_s[1:]) - over) * 1000),
            "expand_all_ms": [round(x * 1000) for x in expand_s],
            "pilot_overhead_ms": round(over * 1000), "rss_mb": round(rss), "runs": runs,
            "target_open_ms": TARGETS["tui_open_ms"], "target_expand_ms": TARGETS["tui_expand_ms"],
            "target_rss_mb": TARGETS["tui_rss_mb"]}


def tui_child(case_path: Path, info: dict[str, Any], runs: int) -> dict[str, Any]:
    nodes = f"{info['root_node']},{info['expand_node']},{info['expand_parent']}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", str(case_path), "--tui-child", nodes,
           "--runs", str(runs)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TZ": "UTC"})
    if done.returncode != 0:
        return {"failed": done.stderr.strip()[-3000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the run ------------------------------------------------------------------------------------------------
def report(results: dict[str, Any]) -> None:
    def line(name: str, value: str, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else "ok" if ok else "MISSED"
        print(f"{name:<52} {value:>14} {target:>12}  {verdict}")

    case = results["case"]
    print(f"\nengine {results['engine']}; load average at start {results['load_average_at_start'][0]:.1f}, "
          f"at end {results['load_average_at_end'][0]:.1f} ({os.cpu_count()} CPUs)")
    if results.get("engine_changed_during_run"):
        print("\nWARNING: engine/ changed on disk during this run: figures may mix two versions of it")
    print(f"\n{case['events']:,} events, {case['creations']:,} process creations (Sysmon 1 + 4688), "
          f"{case['processes']:,} processes on {case['process_hosts']} hosts ({case['merged_nodes']:,} merged), "
          f"{case['process_event_links']:,} process-event links; busiest host {case['busiest_host']} "
          f"{case['busiest_host_processes']:,} processes\n")
    print(f"{'measure':<52} {'value':>14} {'target':>12}")
    b = results.get("build")
    if b:
        line("1. lineage build / ingest time of as many events", f"{b['ratio']:.3f}", f"<= {TARGETS['build_ratio']}",
             b["ratio"] <= TARGETS["build_ratio"])
        if b["build_out_of_memory"]:
            print(f"   OUT OF MEMORY at {'; '.join(b['build_out_of_memory'])}")
        print(f"   build {b['build_s']:.1f}s at memory limit {', '.join(b['build_memory_limit'])} "
              f"(peak RSS {b['build_peak_rss_mb']} MB); ingest of {case['events']:,} at "
              f"{b['ingest_rps']:,}/s = {b['ingest_equivalent_s']:.0f}s (without its derived refresh: ratio "
              f"{b['ratio_without_derived']:.3f})")
        if "refresh_s" in b:
            print(f"   whole derived.refresh(full=True) {b['refresh_s']:.1f}s, of which lineage {b['refresh_lineage_s']:.1f}s "
                  f"(memory limit {', '.join(b['refresh_memory_limit'])}, peak RSS {b['refresh_peak_rss_mb']} MB"
                  + (f"; out of memory at {'; '.join(b['refresh_out_of_memory'])}" if b["refresh_out_of_memory"] else "")
                  + ")")
    inc = results.get("incremental")
    if inc:
        if "ratio" not in inc:
            line(f"2. incremental ({inc['file_events']} events)", "failed", "", False)
            print(f"   {'; '.join(inc['failed'])}")
        else:
            ok = inc["ratio"] <= TARGETS["inc_ratio"] and inc["equals_full_rebuild"]
            line(f"2. incremental ({inc['file_events']} events) / full", f"{inc['ratio']:.4f}",
                 f"<= {TARGETS['inc_ratio']}", ok)
            print(f"   lineage {inc['lineage_s']:.2f}s (boots updated {inc['lineage_epochs']}, hosts rebuilt "
                  f"{inc['lineage_rebuilt_hosts'] or 'none'}) vs full build "
                  f"{inc['full_build_same_copy_s']:.1f}s; the host holds {inc['host_share']:.1%} of the processes; "
                  f"derived refresh {inc['derived_refresh_s']:.2f}s, whole ingest {inc['ingest_s']:.1f}s; "
                  f"equals a full rebuild: {inc['equals_full_rebuild']} (rows differing: {inc['diff_rows']}, all "
                  f"columns {inc['diff_rows_all_columns']}, process_events {inc['diff_process_events']}); "
                  f"+{inc['processes_added']} processes; memory limit {', '.join(inc['memory_limit'])}")
            if inc["failed"]:
                print(f"   failures: {'; '.join(inc['failed'])}")
    c = results.get("command")
    if c:
        line(f"3. ashiato tree --process ({c['lines']:,} lines)", f"{c['command_s']:.3f}s",
             f"<= {TARGETS['command_s']}s", c["command_s"] <= TARGETS["command_s"])
        print(f"   key {c['key']} (depth {case['key_depth']}, {case['key_descendants']:,} descendants); opening the "
              f"case alone {c['open_case_s']:.3f}s (ratio {c['ratio_to_open']}); ancestors+descendants in process "
              f"{c['query_in_process_s']:.3f}s")
    t = results.get("tui")
    if t is None:
        return
    if "skipped" in t or "failed" in t:
        line("4. TUI", "skipped" if "skipped" in t else "failed", "", None if "skipped" in t else False)
        print(f"   {t.get('skipped') or t.get('failed')}")
        return
    line("4. TUI: show_tree to the first level", f"{t['open_ms']}ms", f"<= {TARGETS['tui_open_ms']:.0f}ms",
         t["open_ms"] <= TARGETS["tui_open_ms"])
    line("4. TUI: space to a node's children", f"{t['expand_ms']}ms", f"<= {TARGETS['tui_expand_ms']:.0f}ms",
         t["expand_ms"] <= TARGETS["tui_expand_ms"])
    print(f"   root {t['root']} ({t['first_level_children_shown']} children shown of {case['root_children']:,}); "
          f"node {t['expand_node']} ({t['expanded_children_shown']} children shown of {case['expand_children']:,}); "
          f"first open {t['first_open_ms']}ms, first expand {t['first_expand_ms']}ms, opening the expanded "
          f"node's parent {t['open_parent_ms']}ms; Pilot's per-key overhead {t['pilot_overhead_ms']}ms subtracted "
          "from the expand")
    line("4. TUI process RSS", f"{t['rss_mb']}MB", f"<= {TARGETS['tui_rss_mb']:.0f}MB",
         t["rss_mb"] <= TARGETS["tui_rss_mb"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default=str(Path(tempfile.gettempdir()) / "ashiato-bench-lineage.duckdb"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--min-processes", type=int, default=1_000_000)
    ap.add_argument("--min-depth", type=int, default=3, help="ancestry depth of the `tree --process` key")
    ap.add_argument("--runs", type=int, default=5, help="runs of the command and the TUI")
    ap.add_argument("--build-runs", type=int, default=3)
    ap.add_argument("--refresh-runs", type=int, default=1, help="whole derived refreshes (shown, not judged)")
    ap.add_argument("--ingest-records", type=int, default=200_000)
    ap.add_argument("--ingest-runs", type=int, default=3)
    ap.add_argument("--inc-processes", type=int, default=240)
    ap.add_argument("--inc-runs", type=int, default=3)
    ap.add_argument("--memory-fallback", default="2GB,4GB",
                    help="memory limits the builds are tried at, in turn, when the engine's default runs out")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "ashiato-bench-lineage"))
    ap.add_argument("--skip-incremental", action="store_true")
    ap.add_argument("--case-only", action="store_true", help="build (or reuse) the case, describe it, stop")
    ap.add_argument("--tui-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    case_path = Path(args.case)
    if args.tui_child is not None:
        root, expand, parent = (int(x) for x in args.tui_child.split(","))
        print(json.dumps(asyncio.run(tui_measure(case_path, (root, expand, parent), args.runs)), default=str))
        return 0
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"engine": engine_state(), "load_average_at_start": os.getloadavg()}
    if not case_path.exists():
        build_case(case_path, args.events, args.min_processes)
    results["derived_rebuilt_for_this_engine"] = current_derived(case_path)
    info = describe(case_path, args.min_depth)
    emit("case", {**info, "min_processes_asked": args.min_processes,
                  "enough_creations": info["creations"] >= args.min_processes}, results)
    if args.case_only:
        return 0

    limits = tuple(x for x in args.memory_fallback.split(",") if x)
    rate = SESSIONS.ingest_rate(work, args.ingest_records, args.ingest_runs)
    # Later runs start at the memory limit the first one got through at (its failures are reported).
    builds = [lineage_build(case_path, limits)]
    builds += [lineage_build(case_path, limits, builds[0]["limit"]) for _ in range(args.build_runs - 1)]
    build_s = statistics.median(b["s"] for b in builds)
    equivalent = info["events"] / rate["ingest_rps"]
    build: dict[str, Any] = {
        "build_s": round(build_s, 2), "build_runs": args.build_runs, "build_all_s": [round(b["s"], 2) for b in builds],
        "processes_built": builds[0]["n"], "build_peak_rss_mb": round(max(b["rss"] for b in builds)),
        "build_memory_limit": sorted({b["limit"] or "engine default" for b in builds}), "build_out_of_memory": builds[0]["oom"], **rate,
        "ingest_equivalent_s": round(equivalent, 1), "ratio": round(build_s / equivalent, 4),
        "ratio_without_derived": round(build_s / (info["events"] / rate["ingest_rps_without_derived"]), 4),
        "target": TARGETS["build_ratio"]}
    if args.refresh_runs:
        refreshes = [full_refresh(case_path, limits)]
        refreshes += [full_refresh(case_path, limits, refreshes[0]["limit"]) for _ in range(args.refresh_runs - 1)]
        build.update({"refresh_s": round(statistics.median(r["s"] for r in refreshes), 2),
                      "refresh_lineage_s": round(statistics.median(r["lineage_s"] for r in refreshes), 2),
                      "refresh_peak_rss_mb": round(max(r["rss"] for r in refreshes)),
                      "refresh_memory_limit": sorted({r["limit"] or "engine default" for r in refreshes}),
                      "refresh_out_of_memory": refreshes[0]["oom"]})
    emit("build", build, results)

    emit("command", command(case_path, info["key"], args.runs), results)
    missing = tui_missing()
    if missing:
        print(f"TUI skipped: {missing}", flush=True)
        emit("tui", {"skipped": missing}, results)
    else:
        emit("tui", tui_child(case_path, info, args.runs), results)
    if not args.skip_incremental:
        emit("incremental", incremental(case_path, work, info, args.inc_processes, args.inc_runs, build_s, limits),
             results)
    # The digest, not the commit: commits of other directories during the run do not matter.
    results["engine_changed_during_run"] = engine_state().split()[-1] != results["engine"].split()[-1]
    results["load_average_at_end"] = os.getloadavg()  # other work on the machine makes figures noisy
    report(results)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "lineage.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
