"""Logon sessions: one row per (host, boot epoch, LogonId), built in DuckDB SQL from `events`.

What makes a session (domain.md §2):
- its 4624 (TargetLogonId); the key's first 4624 in timeline order gives the row's account, type,
  package and source. SYSTEM's 0x3e7 (and the other well-known ids) get a 4624 per service start
  within one boot: they are one session with `logons` counting them;
- a UAC administrator logon writes two 4624 whose TargetLinkedLogonId name each other: one row,
  the earlier id as `logon_id`, the other as `linked_logon_id`, every event of either counted;
- `privileged`: a 4672 of the same host and boot whose SubjectLogonId is one of the ids. It is
  matched by key, not by time, because Windows sometimes writes it just before the 4624;
- the end: its last 4634 / 4647, else the shutdown or reboot that ended the boot, else "open"
  (never a zero-length session: type 3 logons often get no 4634);
- its events: every event of the host and boot naming one of the ids as target or subject
  (Sysmon: LogonId), plus the RDP events that carry no LogonId (RemoteConnectionManager 1149,
  LocalSessionManager 21-25), attached to the type 10 session of the same host and account whose
  time span holds them (`session_events`, with how each was matched).

The table is stored in display order (newest activity first) with a dense `ord`, so the TUI pages
through it as the timeline pages through `events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from . import boots
from .decode import LOGON_TYPES, SENSITIVE_PRIVILEGES
from .filters import column_types
from .notes import Notes

Cursor = duckdb.DuckDBPyConnection

# Bump when the build below changes what it computes: cases built by an older one are rebuilt.
VERSION = 7
WELL_KNOWN_LOGON_IDS = (0x3E7, 0x3E4, 0x3E5)
# Accounts that are no one: lower-cased names a logon may carry.
NOT_AN_ACCOUNT = "('anonymous logon', '')"
LOOPBACK = ("127.0.0.1", "::1")
# RDP events logged a moment before the 4624 they lead to (1149, LSM 21) still belong to it.
RDP_SLACK_SECONDS = 60
RDP_TYPES = (10, 12)
FLAGS = ("ntlm_network", "pass_the_hash", "cleartext", "rdp_loopback", "new_source", "explicit_credentials")

SYSMON = "Microsoft-Windows-Sysmon/Operational"
_LSM = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
_RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
RDP_BY_ACCOUNT = f"((channel = '{_RCM}' AND event_id = 1149) OR (channel = '{_LSM}' AND event_id IN (21, 22, 23, 24, 25)))"

DDL = [
    """CREATE TABLE IF NOT EXISTS sessions (
  ord BIGINT,
  host VARCHAR,
  boot INTEGER,
  logon_id UBIGINT,
  linked_logon_id UBIGINT,
  user VARCHAR,
  domain VARCHAR,
  sid VARCHAR,
  logon_type SMALLINT,
  logon_type_name VARCHAR,
  auth_package VARCHAR,
  logon_process VARCHAR,
  lm_package VARCHAR,
  key_length INTEGER,
  elevated_token BOOLEAN,
  impersonation_level VARCHAR,
  src_ip VARCHAR,
  src_port INTEGER,
  workstation VARCHAR,
  logon_process_image VARCHAR,
  privileged BOOLEAN,
  privileges VARCHAR[],
  sensitive_privileges VARCHAR[],
  start TIMESTAMP,
  "end" TIMESTAMP,
  end_reason VARCHAR,
  duration_s DOUBLE,
  last_seen TIMESTAMP,
  logons INTEGER,
  events BIGINT,
  processes BIGINT,
  explicit_uses INTEGER,
  explicit_targets VARCHAR[],
  rdp_clients VARCHAR[],
  reconnects INTEGER,
  disconnects INTEGER,
  rdp_by_logon_id INTEGER,
  rdp_by_account_time INTEGER,
  flags VARCHAR[],
  reasons VARCHAR[],
  first_eid BIGINT,
  source VARCHAR,
  subject_sid VARCHAR
)""",
    """CREATE TABLE IF NOT EXISTS session_events (
  host VARCHAR, boot INTEGER, logon_id UBIGINT, eid BIGINT, how VARCHAR
)""",
]



def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _logon_type_name_sql(col: str) -> str:
    whens = " ".join(f"WHEN {k} THEN {_sql_str(v)}" for k, v in LOGON_TYPES.items())
    return f"CASE {col} {whens} END"


_SENSITIVE = "[" + ", ".join(_sql_str(p.lower()) for p in sorted(SENSITIVE_PRIVILEGES)) + "]"


def create(cur: Cursor) -> None:
    for stmt in DDL:
        cur.execute(stmt)


def _has_temp(cur: Cursor, name: str) -> bool:
    return bool(cur.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                            [name]).fetchall()[0][0])


def _scoped(alias: str, scoped: bool, lid: str) -> str:
    """A semi-join of `alias` to the keys being rebuilt (`_scope`), or nothing for a full build."""
    if not scoped:
        return ""
    return f"AND EXISTS (SELECT 1 FROM _scope s WHERE s.host = {alias}.host AND s.logon_id = {lid})"


def build(cur: Cursor, *, scoped: bool = False) -> None:
    """(Re)build sessions: all of them, or with `scoped` those whose (host, logon_id) is in the
    temp table `_scope(host, boot, logon_id)`. The caller holds the transaction."""
    create(cur)
    # The logons: every 4624, in its epoch.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _logon AS
        SELECT * FROM {boots.boot_of_sql(f'''(SELECT e.host, e.pos, e.ts, e.eid, e.target_logon_id AS lid,
                nullif(e.linked_logon_id, 0) AS linked, e.target_user, e.target_domain, e.target_sid, e.subject_sid,
                e.logon_type, e.auth_package, e.logon_process, e.lm_package, e.key_length, e.elevated_token,
                e.impersonation_level, e.src_ip, e.src_port, e.workstation, e.process_image
            FROM events e WHERE e.channel = 'Security' AND e.event_id = 4624 AND e.target_logon_id IS NOT NULL
                  AND e.host IS NOT NULL {_scoped('e', scoped, 'e.target_logon_id')})''')}""")
    if scoped:
        cur.execute("DELETE FROM _logon l WHERE NOT EXISTS (SELECT 1 FROM _scope s WHERE s.host = l.host "
                    "AND s.boot = l.boot AND s.logon_id = l.lid)")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _key AS
        SELECT host, boot, lid, min(pos) AS first_pos, arg_min(ts, pos) AS start, arg_min(eid, pos) AS first_eid,
               count(*)::INTEGER AS logons, arg_min_null(linked, pos) AS linked,
               arg_min_null(target_user, pos) AS "user", arg_min_null(target_domain, pos) AS domain,
               arg_min_null(target_sid, pos) AS sid, arg_min_null(subject_sid, pos) AS subject_sid,
               arg_min_null(logon_type, pos) AS logon_type, arg_min_null(auth_package, pos) AS auth_package,
               arg_min_null(logon_process, pos) AS logon_process, arg_min_null(lm_package, pos) AS lm_package,
               arg_min_null(key_length, pos) AS key_length, arg_min_null(elevated_token, pos) AS elevated_token,
               arg_min_null(impersonation_level, pos) AS impersonation_level, arg_min_null(src_ip, pos) AS src_ip,
               arg_min_null(src_port, pos) AS src_port, arg_min_null(workstation, pos) AS workstation,
               arg_min_null(process_image, pos) AS logon_process_image
        FROM _logon GROUP BY host, boot, lid""")
    # Linked UAC pairs: the id logged first carries the row; the other is absorbed into it.
    cur.execute("""CREATE OR REPLACE TEMP TABLE _pair AS
        SELECT a.host, a.boot, a.lid AS primary_lid, b.lid AS secondary_lid
        FROM _key a JOIN _key b ON a.host = b.host AND a.boot = b.boot AND a.linked = b.lid AND b.linked = a.lid
        WHERE a.lid <> b.lid AND (a.first_pos < b.first_pos OR (a.first_pos = b.first_pos AND a.lid < b.lid))""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _sess AS
        SELECT k.*, coalesce(p.secondary_lid, k.linked) AS linked_id, p.secondary_lid AS partner
        FROM _key k LEFT JOIN _pair p ON p.host = k.host AND p.boot = k.boot AND p.primary_lid = k.lid
        WHERE NOT EXISTS (SELECT 1 FROM _pair q WHERE q.host = k.host AND q.boot = k.boot AND q.secondary_lid = k.lid)""")
    # Each id of each session (one, or two for a linked pair).
    cur.execute("""CREATE OR REPLACE TEMP TABLE _ids AS
        SELECT host, boot, lid AS key_lid, lid FROM _sess
        UNION ALL SELECT host, boot, lid, partner FROM _sess WHERE partner IS NOT NULL
        UNION ALL
        -- A linked id without a 4624 of its own (its half of the pair was not logged or collected)
        -- still names this logon: its 4672, processes and logoff are the session's.
        SELECT s.host, s.boot, s.lid, s.linked_id FROM _sess s
        WHERE s.partner IS NULL AND s.linked_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM _key k WHERE k.host = s.host AND k.boot = s.boot AND k.lid = s.linked_id)""")
    ids_scope = ("AND EXISTS (SELECT 1 FROM _ids i WHERE i.host = e.host AND i.lid = {col})")

    def in_epoch(select: str, col: str) -> str:
        return boots.boot_of_sql(f"({select} {ids_scope.format(col=col)})")

    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _priv AS
        SELECT i.host, i.boot, i.key_lid, list_sort(list_distinct(flatten(list(string_split(coalesce(t.privileges, ''), ' ')))))
                   AS privileges
        FROM {in_epoch("SELECT e.host, e.pos, e.subject_logon_id AS lid, e.privileges FROM events e "
                       "WHERE e.channel = 'Security' AND e.event_id = 4672", "e.subject_logon_id")} t
        JOIN _ids i ON i.host = t.host AND i.boot = t.boot AND i.lid = t.lid
        GROUP BY ALL""")
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _off AS
        SELECT i.host, i.boot, i.key_lid, max(t.ts) AS end_ts, bool_or(t.event_id = 4647) AS user_logoff
        FROM {in_epoch("SELECT e.host, e.pos, e.ts, e.event_id, e.target_logon_id AS lid FROM events e "
                       "WHERE e.channel = 'Security' AND e.event_id IN (4634, 4647)", "e.target_logon_id")} t
        JOIN _ids i ON i.host = t.host AND i.boot = t.boot AND i.lid = t.lid
        JOIN _sess s ON s.host = i.host AND s.boot = i.boot AND s.lid = i.key_lid
        WHERE t.ts >= s.start OR t.pos > s.first_pos
        GROUP BY ALL""")
    # Every event naming one of the ids (target, or subject when it is another id).
    # Every event naming one of the ids, once per session: by its target id, or by its subject id
    # when the target is not one of the same session's. Narrow on purpose: SYSTEM's 0x3e7 names
    # millions of events on a large case, and the text columns are read below only for the few
    # event kinds that need them.
    narrow = ("e.host, e.pos, e.ts, e.eid, e.channel, e.event_id, e.target_logon_id, e.subject_logon_id, "
              "e.process_pid, e.process_image")
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _act AS
        SELECT i.host, i.boot, i.key_lid, t.eid, t.pos, t.ts, t.channel, t.event_id, t.target_logon_id,
               t.subject_logon_id, t.process_pid, t.process_image
        FROM {in_epoch(f"SELECT {narrow}, e.target_logon_id AS lid FROM events e "
                       "WHERE e.target_logon_id IS NOT NULL", "e.target_logon_id")} t
        JOIN _ids i ON i.host = t.host AND i.boot = t.boot AND i.lid = t.lid
        UNION ALL
        SELECT i.host, i.boot, i.key_lid, t.eid, t.pos, t.ts, t.channel, t.event_id, t.target_logon_id,
               t.subject_logon_id, t.process_pid, t.process_image
        FROM {in_epoch(f"SELECT {narrow}, e.subject_logon_id AS lid FROM events e "
                       "WHERE e.subject_logon_id IS NOT NULL", "e.subject_logon_id")} t
        JOIN _ids i ON i.host = t.host AND i.boot = t.boot AND i.lid = t.lid
        WHERE t.target_logon_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM _ids j WHERE j.host = i.host AND j.boot = i.boot AND j.key_lid = i.key_lid
            AND j.lid = t.target_logon_id)""")
    # RDP events without a LogonId: the type 10 session of that host and account whose span holds them.
    cur.execute("DELETE FROM session_events se WHERE EXISTS (SELECT 1 FROM _sess s WHERE s.host = se.host "
                "AND s.boot = se.boot AND s.lid = se.logon_id)")
    cur.execute(f"""INSERT INTO session_events
        SELECT host, boot, lid, eid, 'account+time' FROM (
          SELECT s.host, s.boot, s.lid, r.eid,
                 row_number() OVER (PARTITION BY r.eid ORDER BY s.start DESC) AS rn
          FROM {boots.boot_of_sql(f"(SELECT e.host, e.pos, e.ts, e.eid, e.target_user FROM events e WHERE {RDP_BY_ACCOUNT} AND e.target_user IS NOT NULL)")} r
          JOIN _sess s ON s.host = r.host AND s.boot = r.boot AND lower(s."user") = lower(r.target_user)
               AND s.logon_type IN {RDP_TYPES}
               AND r.ts >= s.start - INTERVAL {RDP_SLACK_SECONDS} SECOND
          LEFT JOIN _off o ON o.host = s.host AND o.boot = s.boot AND o.key_lid = s.lid
          WHERE o.end_ts IS NULL OR r.ts <= o.end_ts + INTERVAL {RDP_SLACK_SECONDS} SECOND)
        WHERE rn = 1""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _rdp AS
        SELECT se.host, se.boot, se.logon_id AS key_lid, e.eid, e.pos, e.ts, e.channel, e.event_id, e.src_ip,
               e.workstation
        FROM session_events se JOIN events e USING (eid)
        WHERE EXISTS (SELECT 1 FROM _sess s WHERE s.host = se.host AND s.boot = se.boot AND s.lid = se.logon_id)""")
    # Processes the session started: Sysmon 1 (LogonId), 4688 (the new process's TargetLogonId when
    # set, else its creator's). One process logged by both counts once (domain.md §3).
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _proc AS
        SELECT DISTINCT a.host, a.boot, a.key_lid, a.eid, a.ts, a.process_pid, lower(a.process_image) AS image,
               a.channel = '{SYSMON}' AS sysmon
        FROM _act a JOIN _ids i ON i.host = a.host AND i.boot = a.boot AND i.key_lid = a.key_lid
             AND i.lid = CASE WHEN a.channel = '{SYSMON}' THEN a.subject_logon_id
                              ELSE coalesce(nullif(a.target_logon_id, 0), a.subject_logon_id) END
        WHERE (a.channel = '{SYSMON}' AND a.event_id = 1) OR (a.channel = 'Security' AND a.event_id = 4688)""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _procs AS
        SELECT host, boot, key_lid, count(*) FILTER (WHERE sysmon OR NOT EXISTS (
                   SELECT 1 FROM _proc s WHERE s.sysmon AND s.host = p.host AND s.boot = p.boot
                   AND s.key_lid = p.key_lid AND s.process_pid = p.process_pid AND s.image = p.image
                   AND abs(epoch(s.ts) - epoch(p.ts)) <= 2)) AS processes
        FROM _proc p GROUP BY ALL""")
    # Counts only: an aggregate that kept a list or a DISTINCT set per session would hold one entry
    # per event of SYSTEM's session (out of memory on a 10M-event case, bench/sessions.py).
    cur.execute("""CREATE OR REPLACE TEMP TABLE _agg AS
        SELECT host, boot, key_lid, count(*) AS events, max(ts) AS last_seen,
               count(*) FILTER (WHERE channel = 'Security' AND event_id = 4648)::INTEGER AS explicit_uses,
               -- How the RDP events were tied to the session: 4778/4779 name its LogonId; 1149 and
               -- LocalSessionManager only the account, matched by time (session_events).
               count(*) FILTER (WHERE channel = 'Security' AND event_id IN (4778, 4779)
                                AND NOT attached)::INTEGER AS rdp_by_logon_id,
               count(*) FILTER (WHERE attached)::INTEGER AS rdp_by_account_time,
               -- Security and LocalSessionManager each log one reconnect (4778, 25) and disconnect
               -- (4779, 24): whichever log has more of them counts, so one action is one.
               greatest(count(*) FILTER (WHERE channel = 'Security' AND event_id = 4778),
                        count(*) FILTER (WHERE channel LIKE '%LocalSessionManager%' AND event_id = 25)
                        )::INTEGER AS reconnects,
               greatest(count(*) FILTER (WHERE channel = 'Security' AND event_id = 4779),
                        count(*) FILTER (WHERE channel LIKE '%LocalSessionManager%' AND event_id = 24)
                        )::INTEGER AS disconnects
        FROM (SELECT host, boot, key_lid, ts, channel, event_id, FALSE AS attached FROM _act
              UNION ALL SELECT host, boot, key_lid, ts, channel, event_id, TRUE FROM _rdp) u
        GROUP BY ALL""")
    # Where the session used explicit credentials (4648) and where its RDP client was: lists built
    # from those few events only, their text read from `events` by eid.
    cur.execute("""CREATE OR REPLACE TEMP TABLE _lists AS
        SELECT host, boot, key_lid,
               list_sort(list_distinct(list(target) FILTER (WHERE target IS NOT NULL))) AS explicit_targets,
               list_sort(list_distinct(list(client) FILTER (WHERE client IS NOT NULL))) AS rdp_clients
        FROM (SELECT a.host, a.boot, a.key_lid,
                     CASE WHEN a.event_id = 4648 THEN coalesce(e.target_user, '?') || ' on '
                          || coalesce(e.dst_host, '?') END AS target,
                     CASE WHEN a.event_id IN (4778, 4779) THEN coalesce(e.src_ip, e.workstation) END AS client
              FROM _act a JOIN events e ON e.eid = a.eid
              WHERE a.channel = 'Security' AND a.event_id IN (4648, 4778, 4779)
              UNION ALL
              SELECT r.host, r.boot, r.key_lid, NULL, coalesce(r.src_ip, r.workstation) FROM _rdp r)
        GROUP BY ALL""")
    if scoped:
        cur.execute("""DELETE FROM sessions s WHERE EXISTS (SELECT 1 FROM _scope c WHERE c.host = s.host
                       AND c.boot = s.boot AND (c.logon_id = s.logon_id OR c.logon_id = s.linked_logon_id))""")
    else:
        cur.execute("DELETE FROM sessions")
    cur.execute(f"""INSERT INTO sessions BY NAME
        SELECT s.host, s.boot, s.lid AS logon_id, s.linked_id AS linked_logon_id, s."user", s.domain, s.sid,
               s.logon_type, {_logon_type_name_sql('s.logon_type')} AS logon_type_name, s.auth_package,
               s.logon_process, s.lm_package, s.key_length,
               -- a UAC pair is elevated when either half is (the elevated token is the admin's)
               CASE WHEN s.elevated_token OR pk.elevated_token THEN TRUE
                    ELSE coalesce(s.elevated_token, pk.elevated_token) END AS elevated_token,
               s.impersonation_level, s.src_ip,
               s.src_port, s.workstation, s.logon_process_image,
               p.key_lid IS NOT NULL AS privileged,
               coalesce(list_filter(p.privileges, lambda x: x <> ''), []) AS privileges,
               coalesce(list_filter(p.privileges, lambda x: list_contains({_SENSITIVE}, lower(x))), []) AS sensitive_privileges,
               s.start,
               CASE WHEN o.end_ts IS NOT NULL THEN o.end_ts
                    WHEN b.end_reason IN ('shutdown', 'reboot') THEN b.end_ts END AS "end",
               CASE WHEN o.end_ts IS NOT NULL THEN CASE WHEN o.user_logoff THEN '4647' ELSE '4634' END
                    WHEN b.end_reason IN ('shutdown', 'reboot') AND b.end_ts IS NOT NULL THEN b.end_reason
                    ELSE 'open' END AS end_reason,
               s.logons, coalesce(a.events, 0) AS events, coalesce(pr.processes, 0) AS processes,
               coalesce(a.explicit_uses, 0) AS explicit_uses,
               coalesce(li.explicit_targets, []) AS explicit_targets,
               coalesce(li.rdp_clients, []) AS rdp_clients,
               coalesce(a.reconnects, 0) AS reconnects, coalesce(a.disconnects, 0) AS disconnects,
               coalesce(a.rdp_by_logon_id, 0) AS rdp_by_logon_id,
               coalesce(a.rdp_by_account_time, 0) AS rdp_by_account_time,
               greatest(a.last_seen, s.start) AS last_seen, s.first_eid,
               s.subject_sid,
               CASE WHEN s.lid IN ({', '.join(str(x) for x in WELL_KNOWN_LOGON_IDS)}) THEN NULL
                    WHEN s.src_ip IS NOT NULL AND s.src_ip NOT IN ({', '.join(_sql_str(x) for x in LOOPBACK)}) THEN s.src_ip
                    ELSE upper(s.workstation) END AS source
        FROM _sess s
        LEFT JOIN _priv p ON p.host = s.host AND p.boot = s.boot AND p.key_lid = s.lid
        LEFT JOIN _off o ON o.host = s.host AND o.boot = s.boot AND o.key_lid = s.lid
        LEFT JOIN boots b ON b.host = s.host AND b.boot = s.boot
        LEFT JOIN _agg a ON a.host = s.host AND a.boot = s.boot AND a.key_lid = s.lid
        LEFT JOIN _procs pr ON pr.host = s.host AND pr.boot = s.boot AND pr.key_lid = s.lid
        LEFT JOIN _key pk ON pk.host = s.host AND pk.boot = s.boot AND pk.lid = s.partner
        LEFT JOIN _lists li ON li.host = s.host AND li.boot = s.boot AND li.key_lid = s.lid""")
    if scoped and _has_temp(cur, "_delta"):
        apply_delta(cur)
    _flags(cur, scoped)
    for name in ("_logon", "_key", "_pair", "_sess", "_ids", "_priv", "_off", "_act", "_rdp", "_proc", "_procs", "_agg", "_lists"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")


# The events that make a session what it is (its logon, privileges, logoff, RDP), as opposed to
# what it did: a new file with only the latter for a session adds to its counts (`apply_delta`).
DEFINING = ("((channel = 'Security' AND event_id IN (4624, 4634, 4647, 4672, 4778, 4779)) "
            f"OR {RDP_BY_ACCOUNT})")


def apply_delta(cur: Cursor) -> None:
    """Add what the new events (temp table `_new_events`: eid) did to the sessions of temp table
    `_delta(host, boot, logon_id)`, which they name but do not define: event counts, last activity,
    explicit credentials, processes started. SYSTEM's session is named by most new events, and
    counting its millions again on every ingest is what made an update cost a rebuild."""
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _dact AS
        SELECT s.host, s.boot, s.logon_id, e.eid, e.pos, e.ts, e.channel, e.event_id, e.target_logon_id,
               e.subject_logon_id, e.process_pid, lower(e.process_image) AS image, e.target_user, e.dst_host
        FROM {boots.boot_of_sql("(SELECT e.* FROM events e WHERE e.eid IN (SELECT eid FROM _new_events))")} e
        JOIN sessions s ON s.host = e.host AND s.boot = e.boot
             AND (e.target_logon_id IN (s.logon_id, s.linked_logon_id)
                  OR e.subject_logon_id IN (s.logon_id, s.linked_logon_id))
        WHERE EXISTS (SELECT 1 FROM _delta d WHERE d.host = s.host AND d.boot = s.boot AND d.logon_id = s.logon_id)""")
    # Processes the session started, counted as a full build counts them: every Sysmon 1, and a
    # 4688 only when no Sysmon 1 of the same process (host, PID, image, within 2 s) exists — old
    # or new; a new Sysmon 1 whose process an old 4688 already counted adds nothing.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _dproc AS
        SELECT d.host, d.boot, d.logon_id, count(*) AS processes FROM _dact d
        JOIN sessions s ON s.host = d.host AND s.boot = d.boot AND s.logon_id = d.logon_id
        WHERE CASE WHEN d.channel = '{SYSMON}' THEN d.event_id = 1 AND d.subject_logon_id IN (s.logon_id, s.linked_logon_id)
                   ELSE d.channel = 'Security' AND d.event_id = 4688
                        AND coalesce(nullif(d.target_logon_id, 0), d.subject_logon_id) IN (s.logon_id, s.linked_logon_id)
              END
          AND NOT EXISTS (
              SELECT 1 FROM events o WHERE o.host = d.host AND o.process_pid = d.process_pid
                AND lower(o.process_image) = d.image AND abs(epoch(o.ts) - epoch(d.ts)) <= 2 AND o.eid <> d.eid
                AND CASE WHEN d.channel = '{SYSMON}'
                         THEN o.channel = 'Security' AND o.event_id = 4688
                              AND o.eid NOT IN (SELECT eid FROM _new_events)
                         ELSE o.channel = '{SYSMON}' AND o.event_id = 1 END)
        GROUP BY ALL""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _dsum AS
        SELECT d.host, d.boot, d.logon_id, count(*) AS events, max(d.ts) AS last_seen,
               count(*) FILTER (WHERE d.channel = 'Security' AND d.event_id = 4648)::INTEGER AS explicit_uses,
               list(coalesce(d.target_user, '?') || ' on ' || coalesce(d.dst_host, '?'))
                   FILTER (WHERE d.channel = 'Security' AND d.event_id = 4648) AS explicit_targets
        FROM _dact d GROUP BY ALL""")
    cur.execute("""UPDATE sessions SET events = sessions.events + a.events,
                       last_seen = greatest(sessions.last_seen, a.last_seen),
                       explicit_uses = sessions.explicit_uses + a.explicit_uses,
                       explicit_targets = list_sort(list_distinct(list_concat(sessions.explicit_targets,
                                                                  coalesce(a.explicit_targets, [])))),
                       processes = sessions.processes + coalesce(p.processes, 0)
                   FROM _dsum a LEFT JOIN _dproc p USING (host, boot, logon_id)
                   WHERE a.host = sessions.host AND a.boot = sessions.boot AND a.logon_id = sessions.logon_id""")
    for name in ("_dact", "_dproc", "_dsum"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")


# An account is its SID where the logon names one (CORP\\Administrator and each host's local
# Administrator are different accounts), else its name.
ACCOUNT = "coalesce(nullif(sid, 'S-1-0-0'), lower(\"user\"))"


def _flags(cur: Cursor, scoped: bool = False) -> None:
    """Flags and their reasons, and the display order. `new_source` compares an account's sessions
    across the case, so after a scoped build the flags of every session of the accounts rebuilt are
    worked out again (only theirs), and the order of all (one column)."""
    loopback = ", ".join(_sql_str(x) for x in LOOPBACK)
    accounts = ""
    if scoped:
        delta = ("OR EXISTS (SELECT 1 FROM _delta d WHERE d.host = s.host AND d.boot = s.boot "
                 "AND d.logon_id = s.logon_id)") if _has_temp(cur, "_delta") else ""
        cur.execute(f"""CREATE OR REPLACE TEMP TABLE _accounts AS SELECT DISTINCT {ACCOUNT} AS account
                        FROM sessions s WHERE EXISTS (SELECT 1 FROM _scope c WHERE c.host = s.host
                        AND c.boot = s.boot AND (c.logon_id = s.logon_id OR c.logon_id = s.linked_logon_id))
                        {delta}""")
        accounts = f"WHERE {ACCOUNT} IN (SELECT account FROM _accounts)"
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _flagged AS
        WITH firsts AS (
            SELECT host, boot, logon_id,
                   row_number() OVER (PARTITION BY {ACCOUNT} ORDER BY start, host, boot, logon_id) AS nth_account,
                   row_number() OVER (PARTITION BY {ACCOUNT}, source ORDER BY start, host, boot, logon_id) AS nth_source,
                   first_value(source) OVER (PARTITION BY {ACCOUNT} ORDER BY start, host, boot, logon_id) AS first_source
            FROM sessions WHERE source IS NOT NULL AND "user" IS NOT NULL {accounts.replace("WHERE", "AND")})
        SELECT s.host, s.boot, s.logon_id,
            list_filter([
              CASE WHEN s.logon_type = 3 AND (upper(s.auth_package) = 'NTLM' OR upper(s.logon_process) = 'NTLMSSP')
                        AND lower(coalesce(s."user", '')) NOT IN {NOT_AN_ACCOUNT} AND coalesce(s.sid, '') <> 'S-1-5-7'
                   THEN 'ntlm_network' END,
              CASE WHEN (s.logon_type = 3 AND upper(coalesce(s.logon_process, '')) = 'NTLMSSP' AND s.key_length = 0
                         AND lower(coalesce(s."user", '')) NOT IN {NOT_AN_ACCOUNT}
                         AND s.subject_sid = 'S-1-0-0')
                     OR (s.logon_type = 9 AND lower(coalesce(s.logon_process, '')) = 'seclogo')
                   THEN 'pass_the_hash' END,
              CASE WHEN s.logon_type = 8 THEN 'cleartext' END,
              CASE WHEN s.logon_type IN {RDP_TYPES} AND s.src_ip IN ({loopback}) THEN 'rdp_loopback' END,
              CASE WHEN f.nth_account > 1 AND f.nth_source = 1 THEN 'new_source' END,
              CASE WHEN s.explicit_uses > 0 THEN 'explicit_credentials' END], lambda x: x IS NOT NULL) AS flags,
            list_filter([
              CASE WHEN s.logon_type = 3 AND (upper(s.auth_package) = 'NTLM' OR upper(s.logon_process) = 'NTLMSSP')
                        AND lower(coalesce(s."user", '')) NOT IN {NOT_AN_ACCOUNT} AND coalesce(s.sid, '') <> 'S-1-5-7'
                   THEN 'NTLM network logon' || coalesce(' from ' || coalesce(s.src_ip, s.workstation), '')
                        || coalesce(' (' || s.lm_package || ')', '') || ': inside a domain, a sign of pass-the-hash or shared local admin passwords' END,
              CASE WHEN s.logon_type = 9 AND lower(coalesce(s.logon_process, '')) = 'seclogo'
                   THEN 'type 9 logon by seclogo: runas /netonly, or sekurlsa::pth'
                   WHEN s.logon_type = 3 AND upper(coalesce(s.logon_process, '')) = 'NTLMSSP' AND s.key_length = 0
                        AND lower(coalesce(s."user", '')) NOT IN {NOT_AN_ACCOUNT}
                        AND s.subject_sid = 'S-1-0-0'
                   THEN 'NtLmSsp network logon with key length 0 and a null subject: the pass-the-hash shape' END,
              CASE WHEN s.logon_type = 8 THEN 'type 8: the password was sent in clear text' END,
              CASE WHEN s.logon_type IN {RDP_TYPES} AND s.src_ip IN ({loopback})
                   THEN 'RDP logon from ' || s.src_ip || ': the connection came through a tunnel on this host' END,
              CASE WHEN f.nth_account > 1 AND f.nth_source = 1
                   THEN 'first logon of ' || s."user" || ' from ' || s.source || ' (before: from ' || f.first_source || ')' END,
              CASE WHEN s.explicit_uses > 0
                   THEN 'explicit credentials used from this session (4648 x' || s.explicit_uses || '): '
                        || array_to_string(s.explicit_targets, ', ') END], lambda x: x IS NOT NULL) AS reasons
        FROM (SELECT * FROM sessions {accounts}) s LEFT JOIN firsts f USING (host, boot, logon_id)""")
    cur.execute("""UPDATE sessions SET flags = f.flags, reasons = f.reasons FROM _flagged f
                   WHERE f.host = sessions.host AND f.boot = sessions.boot AND f.logon_id = sessions.logon_id
                   AND (sessions.flags IS DISTINCT FROM f.flags OR sessions.reasons IS DISTINCT FROM f.reasons)""")
    cur.execute("DROP TABLE IF EXISTS _flagged")
    cur.execute("DROP TABLE IF EXISTS _accounts")
    cur.execute('UPDATE sessions SET duration_s = epoch("end") - epoch(start) WHERE "end" IS NOT NULL AND duration_s IS NULL')
    order = "ORDER BY last_seen DESC NULLS LAST, start DESC, host, boot, logon_id"
    if scoped:
        # Display order, newest activity first: one column updated where it changed (the table
        # stays in the order of the last full build; a window reads `ord` ranges either way).
        cur.execute(f"""UPDATE sessions SET ord = r.ord FROM (
                            SELECT host, boot, logon_id, row_number() OVER ({order}) - 1 AS ord FROM sessions) r
                        WHERE r.host = sessions.host AND r.boot = sessions.boot AND r.logon_id = sessions.logon_id
                          AND sessions.ord IS DISTINCT FROM r.ord""")
        return
    # Stored in display order so a window is a range scan.
    cur.execute(f"""CREATE OR REPLACE TEMP TABLE _sorted AS
        SELECT * REPLACE (row_number() OVER ({order}) - 1 AS ord) FROM sessions""")
    cur.execute("DELETE FROM sessions")
    cur.execute("INSERT INTO sessions SELECT * FROM _sorted ORDER BY ord")
    cur.execute("DROP TABLE _sorted")


# -- reading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionKey:
    host: str
    boot: int
    logon_id: int

    def text(self) -> str:
        """How a `session:` filter term names it: HOST/BOOT/0xLOGONID."""
        return f"{self.host}/{self.boot}/0x{self.logon_id:x}"

    @staticmethod
    def parse(text: str) -> SessionKey:
        parts = text.strip().rsplit("/", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"{text!r} is not a session (HOST/BOOT/0xLOGONID)")
        host, boot, lid = parts
        try:
            number = int(lid, 16) if lid.lower().startswith("0x") else int(lid)
            return SessionKey(host, int(boot), number)
        except ValueError:
            raise ValueError(f"{text!r} is not a session (HOST/BOOT/0xLOGONID)") from None


def key_of(row: dict[str, Any]) -> SessionKey:
    return SessionKey(str(row["host"]), int(row["boot"]), int(row["logon_id"]))


def session_term_sql() -> str:
    """SQL over `events e` for the events of one session (bound with `session_params`): those of its
    host and boot naming one of its ids; the RDP events attached to it; and what the processes it
    started did that Sysmon logs without a LogonId (network connections, files, registry, DNS…),
    by their ProcessGuid, which is unique across boots."""
    named = ("SELECT e2.eid, e2.channel, e2.event_id, e2.process_guid FROM sessions s "
             "JOIN boots b ON b.host = s.host AND b.boot = s.boot "
             "JOIN events e2 ON e2.host = s.host AND e2.pos BETWEEN b.start_pos AND b.end_pos "
             "AND (e2.target_logon_id IN (s.logon_id, s.linked_logon_id) "
             "     OR e2.subject_logon_id IN (s.logon_id, s.linked_logon_id)) "
             "WHERE s.host = ? AND s.boot = ? AND (s.logon_id = ? OR s.linked_logon_id = ?)")
    sql = (f"(e.eid IN (SELECT eid FROM ({named})) "
           "OR e.eid IN (SELECT se.eid FROM session_events se JOIN sessions s ON s.host = se.host "
           "AND s.boot = se.boot AND s.logon_id = se.logon_id "
           "WHERE s.host = ? AND s.boot = ? AND (s.logon_id = ? OR s.linked_logon_id = ?)) "
           f"OR (e.process_guid IS NOT NULL AND e.channel = '{SYSMON}' AND e.host = ? AND e.process_guid IN ("
           f"SELECT p.process_guid FROM ({named}) p WHERE p.channel = '{SYSMON}' AND p.event_id = 1 "
           "AND p.process_guid IS NOT NULL)))")
    return sql


def session_params(key: SessionKey) -> list[Any]:
    one = [key.host, key.boot, key.logon_id, key.logon_id]
    return one + one + [key.host] + one


def get(cur: Cursor, key: SessionKey) -> dict[str, Any] | None:
    result = cur.execute("SELECT * FROM sessions WHERE host = ? AND boot = ? AND (logon_id = ? OR linked_logon_id = ?)",
                         [key.host, key.boot, key.logon_id, key.logon_id])
    names = [d[0] for d in result.description or []]
    row = result.fetchone()
    return dict(zip(names, row, strict=True)) if row else None



# -- the filter language over sessions --------------------------------------------------------------
SESSION_TYPES = column_types(DDL[0])


def _sessions_table() -> Any:
    from .filters import Table

    return Table(
        "sessions", SESSION_TYPES,
        {"type": ("logon_type",), "ip": ("src_ip",), "logon_id": ("logon_id", "linked_logon_id"),
         "flag": ("flags",), "privilege": ("privileges",), "auth": ("auth_package",),
         "package": ("auth_package",), "computer": ("host",), "account": ("user",), "reason": ("end_reason",)},
        [c for c, t in SESSION_TYPES.items() if t == "VARCHAR"],
        # On the session's span: still active at or after the time, started before it.
        'coalesce(e."end", e.last_seen, e.start) >= ?', "e.start < ?", time_column="start")


def compile_session_filter(text: str) -> Any:
    from .filters import compile_filter

    return compile_filter(text, None, _sessions_table())


def total(cur: Cursor) -> int:
    return int(cur.execute("SELECT count(*) FROM sessions").fetchall()[0][0])


def resolve(cur: Cursor, text: str) -> Any:
    """A filter over sessions → a `views.View` of their `ord`s (display order)."""
    from .views import ordinal_view

    return ordinal_view(cur, compile_session_filter(text), "sessions", "ord", total(cur))


def window(cur: Cursor, view: Any, start: int, n: int) -> list[dict[str, Any]]:
    """Sessions start..start+n-1 of a view, as dicts (the timeline widget's row source)."""
    from .views import window_where

    where = window_where(view, start, n, "ord")
    if where is None:
        return []
    result = cur.execute(f"SELECT * FROM sessions WHERE {where[0]} ORDER BY ord", where[1])
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def query(cur: Cursor, text: str = "", *, limit: int | None = None) -> list[dict[str, Any]]:
    """Sessions matching a filter, newest activity first (what `ashiato sessions` prints)."""
    compiled = compile_session_filter(text)
    sql = f"SELECT * FROM sessions e WHERE {compiled.sql} ORDER BY ord"
    params = list(compiled.params)
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    result = cur.execute(sql, params)
    names = [d[0] for d in result.description or []]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


def frequency(cur: Cursor, view: Any, column: str, *, rarest_first: bool = False,
              limit: int = 200) -> list[tuple[Any, int]]:
    if column not in SESSION_TYPES:
        raise ValueError(f"unknown column {column!r}")
    where = view.filter.sql if view.positions is not None else "TRUE"
    order = "ASC" if rarest_first else "DESC"
    expr = f'unnest(e."{column}")' if SESSION_TYPES[column].endswith("[]") else f'e."{column}"'
    return [(v, int(n)) for v, n in cur.execute(
        f"SELECT v, count(*) AS n FROM (SELECT {expr} AS v FROM sessions e WHERE {where}) GROUP BY v "
        f"ORDER BY n {order}, v NULLS LAST LIMIT ?", [*view.filter.params, limit]).fetchall()]


# -- marks and export ----------------------------------------------------------------------------
# A mark names the session by its first 4624's eid, which never changes: boot numbers shift when a
# log with an earlier boot is added, and a HOST/BOOT/0xID key would then name another session.
EXPORT_FORMATS = ("jsonl", "csv", "parquet")


def marked(cur: Cursor) -> set[int]:
    """The first_eid of each marked session (kept in the case's notes, engine.notes)."""
    with Notes(cur) as n:
        return n.marked_sessions()


def toggle_mark(cur: Cursor, first_eid: int) -> bool:
    with Notes(cur) as n:
        return n.toggle_session(first_eid)


def export(cur: Cursor, text: str, path: str, fmt: str, *, marked_only: bool = False) -> int:
    """Write the sessions matching `text` (or only the marked ones) with every column."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    compiled = compile_session_filter(text)
    where = compiled.sql
    params = list(compiled.params)
    if marked_only:
        where += " AND list_contains(?::BIGINT[], e.first_eid)"
        params.append(sorted(marked(cur)))
    table = cur.sql(f"SELECT * EXCLUDE (ord) FROM sessions e WHERE {where} ORDER BY ord", params=params).to_arrow_table()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        flat = table
        for i, name in enumerate(table.column_names):
            if str(table.schema.field(name).type).startswith("list"):
                import pyarrow.compute as pc

                flat = flat.set_column(i, name, pc.binary_join(table.column(name), " "))
        pcsv.write_csv(flat, path)
    else:
        import orjson

        with open(path, "wb") as out:
            for rec in table.to_pylist():
                out.write(orjson.dumps(rec, default=str) + b"\n")
    return int(table.num_rows)
