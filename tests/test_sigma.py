"""Sigma rules (engine.findings.sigma) on SigmaHQ's own regression data and on small generated
cases: every regression rule fires on its EVTX log and on that log's evtx_dump JSON twin; the
Windows rule set converts; modifiers and conditions match case-insensitively, keywords search the
whole event, process_creation rules read 4688 too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, evtx_doc, ingest_into, write_jsonl

from engine import Case, findings
from engine.findings import sigma

SIGMA = CORPUS.parent / "sigma"
REGRESSION = CORPUS / "evtx" / "sigma-regression"
TWINS = CORPUS / "ndjson" / "sigma-regression-evtxdump"


@pytest.fixture(scope="module")
def sigma_rules(tmp_path_factory: pytest.TempPathFactory) -> sigma.SigmaSet:
    if not SIGMA.is_dir():
        pytest.skip(f"SigmaHQ rules not found at {SIGMA}")
    cache = tmp_path_factory.mktemp("sigma-cache")
    return sigma.load(*[SIGMA / d for d in ("rules", "rules-threat-hunting", "rules-emerging-threats",
                                            "rules-placeholder")], cache=cache)


def test_at_least_99_percent_of_the_windows_rules_convert_or_wait_for_a_placeholder(
        sigma_rules: sigma.SigmaSet) -> None:
    skipped = [s for s in sigma_rules.skipped if "product=windows" in s]
    windows = len(sigma_rules.rules) + len(sigma_rules.failed) + len(skipped) + len(sigma_rules.waiting)
    print(f"{len(sigma_rules.rules)} converted, {len(sigma_rules.waiting)} waiting for a placeholder, of {windows} "
          f"Windows rules; failed: {sigma_rules.failed[:10]}; skipped: {sorted({s.split(': ', 1)[1] for s in skipped})}")
    assert (len(sigma_rules.rules) + len(sigma_rules.waiting)) / windows >= 0.99
    assert all("waiting for placeholder %" in w for w in sigma_rules.waiting) and len(sigma_rules.waiting) >= 10


def test_a_placeholder_given_values_converts_its_rule(tmp_path: Path) -> None:
    if not SIGMA.is_dir():
        pytest.skip(f"SigmaHQ rules not found at {SIGMA}")
    folder = SIGMA / "rules-placeholder" / "windows"
    before = sigma.load(folder, cache=tmp_path / "a")
    after = sigma.load(folder, cache=tmp_path / "b", placeholders={"Admins_Workstations": ["ADM-*", "JUMP01"]})
    assert len(after.rules) > len(before.rules) == 0
    (rule,) = [r for r in after.rules if "admin_logon" in r.source]
    assert "starts_with(" in rule.sigma_condition and "'adm-'" in rule.sigma_condition and "'jump01'" in rule.sigma_condition


def test_a_second_load_converts_nothing(tmp_path: Path) -> None:
    if not SIGMA.is_dir():
        pytest.skip(f"SigmaHQ rules not found at {SIGMA}")
    folder = SIGMA / "rules" / "windows" / "builtin" / "security"
    first = sigma.load(folder, cache=tmp_path)
    cached = len(list(tmp_path.rglob("*.json")))
    assert cached and first.rules
    import sigma.collection as collection

    real = collection.SigmaCollection.from_yaml
    collection.SigmaCollection.from_yaml = None  # type: ignore[assignment]
    try:
        again = sigma.load(folder, cache=tmp_path)
    finally:
        collection.SigmaCollection.from_yaml = real  # type: ignore[method-assign]
    assert [r.sigma_condition for r in again.rules] == [r.sigma_condition for r in first.rules]


def _regression_logs() -> list[Path]:
    return sorted(REGRESSION.rglob("*.evtx")) if REGRESSION.is_dir() else []


@pytest.fixture(scope="module")
def regression_hits(corpus_case: Any, sigma_rules: sigma.SigmaSet) -> dict[tuple[str, int], int]:
    cur = corpus_case.cursor()
    wanted = {p.stem for p in _regression_logs()}
    rules = [r for r in sigma_rules.rules if r.id in wanted]
    assert not sigma.prepare(cur, rules)
    return {(str(r), int(s)): int(n) for r, s, n in cur.execute(
        "SELECT rule, eid >> 32, count(*) FROM sigma_hits GROUP BY ALL").fetchall()}


def _source_id(corpus_case: Any, path: Path) -> int:
    for p, sid in corpus_case.cursor().execute("SELECT path, source_id FROM sources").fetchall():
        if os.path.normpath(p) == os.path.normpath(str(path)):
            return int(sid)
    raise AssertionError(f"{path} is not in the corpus case")


@pytest.mark.parametrize("log", _regression_logs(), ids=lambda p: p.stem)
def test_each_regression_rule_fires_on_its_evtx_and_on_its_json_twin(corpus_case: Any, log: Path,
                                                                      regression_hits: dict[tuple[str, int], int]) -> None:
    rule = log.stem
    assert regression_hits.get((rule, _source_id(corpus_case, log)), 0) > 0, f"{rule} on {log.name}"
    twin = TWINS / log.relative_to(REGRESSION).with_suffix(".json")
    assert twin.is_file(), twin
    assert regression_hits.get((rule, _source_id(corpus_case, twin)), 0) > 0, f"{rule} on its JSON twin"


# -- generated cases: modifiers, conditions, keywords, 4688 ------------------------------------------
RULES = {
    "contains.yml": """title: Contains any case
id: 00000000-0000-0000-0000-000000000001
level: high
logsource: {product: windows, category: process_creation}
detection:
    sel: {CommandLine|contains: 'MIMIKATZ'}
    condition: sel
""",
    "all_not.yml": """title: All of, and not a filter
id: 00000000-0000-0000-0000-000000000002
level: medium
tags: [attack.t1059.001]
logsource: {product: windows, category: process_creation}
detection:
    sel:
        Image|endswith: '\\\\powershell.exe'
        CommandLine|contains|all: ['-enc', 'hidden']
    filter:
        ParentImage|startswith: 'C:\\\\Program Files\\\\'
    condition: sel and not filter
""",
    "re_cidr.yml": """title: Regex and CIDR in 1 of
id: 00000000-0000-0000-0000-000000000003
level: low
logsource: {product: windows, category: network_connection}
detection:
    sel_re: {Image|re: '(?i).*\\\\rundll32\\.exe$'}
    sel_net: {DestinationIp|cidr: '10.1.0.0/16'}
    condition: 1 of sel_*
""",
    "keywords.yml": """title: Keywords search the whole event
id: 00000000-0000-0000-0000-000000000004
level: medium
logsource: {product: windows, service: system}
detection:
    keywords: ['Invoke-Mimikatz']
    condition: keywords
""",
}


def _case(tmp_path: Path) -> Path:
    s, sec, sysm = "Microsoft-Windows-Sysmon/Operational", "Security", "System"
    docs = [
        # 1: a 4688 (no Sysmon) with mimikatz in any case; near miss: a 4688 without it
        evtx_doc(1, 4688, "2024-05-01T10:00:00Z", host="P1", data={
            "NewProcessName": "C:\\Tools\\m.exe", "CommandLine": "m.exe privilege::debug MimiKatz",
            "ParentProcessName": "C:\\Windows\\System32\\cmd.exe", "NewProcessId": "0x10"}),
        evtx_doc(2, 4688, "2024-05-01T10:00:01Z", host="N1", data={
            "NewProcessName": "C:\\Tools\\m.exe", "CommandLine": "m.exe --help", "NewProcessId": "0x11"}),
        # 2: Sysmon 1 powershell -enc hidden; near misses: started from Program Files, or without hidden
        evtx_doc(3, 1, "2024-05-01T10:01:00Z", host="P2", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\PowerShell.EXE",
            "CommandLine": "powershell -w HIDDEN -ENC aQBlAHgA", "ParentImage": "C:\\Windows\\explorer.exe",
            "ProcessGuid": "{11111111-0000-0000-0000-000000000001}", "ProcessId": "100"}),
        evtx_doc(4, 1, "2024-05-01T10:01:00Z", host="N2", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "CommandLine": "powershell -w hidden -enc aQBlAHgA", "ParentImage": "C:\\Program Files\\Agent\\a.exe",
            "ProcessGuid": "{11111111-0000-0000-0000-000000000002}", "ProcessId": "101"}),
        evtx_doc(5, 1, "2024-05-01T10:01:00Z", host="N2", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "CommandLine": "powershell -enc aQBlAHgA", "ParentImage": "C:\\Windows\\explorer.exe",
            "ProcessGuid": "{11111111-0000-0000-0000-000000000003}", "ProcessId": "102"}),
        # 3: Sysmon 3 by rundll32, and one to 10.1.2.3; near miss: 10.2.0.1 from svchost
        evtx_doc(6, 3, "2024-05-01T10:02:00Z", host="P3", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\RUNDLL32.EXE", "DestinationIp": "192.0.2.1"}),
        evtx_doc(7, 3, "2024-05-01T10:02:01Z", host="P3", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\svchost.exe", "DestinationIp": "10.1.2.3"}),
        evtx_doc(8, 3, "2024-05-01T10:02:02Z", host="N3", channel=s, provider="Microsoft-Windows-Sysmon", data={
            "Image": "C:\\Windows\\System32\\svchost.exe", "DestinationIp": "10.2.0.1"}),
        # 4: the keyword in a System event's data; near miss: a Security event with it
        evtx_doc(9, 7045, "2024-05-01T10:03:00Z", host="P4", channel=sysm, provider="Service Control Manager",
                 data={"ServiceName": "x", "ImagePath": "powershell -c Invoke-Mimikatz"}),
        evtx_doc(10, 4624, "2024-05-01T10:03:00Z", host="N4", channel=sec, data={
            "TargetUserName": "Invoke-Mimikatz", "LogonType": "3"}),
    ]
    path = tmp_path / "case.duckdb"
    ingest_into(path, [write_jsonl(tmp_path / "e.jsonl", docs)])
    return path


def test_modifiers_conditions_keywords_and_4688_each_match_their_case_and_not_the_near_miss(tmp_path: Path) -> None:
    rules_dir = tmp_path / "sigma"
    rules_dir.mkdir()
    for name, text in RULES.items():
        (rules_dir / name).write_text(text, encoding="utf-8")
    rules = findings.load(sigma=[rules_dir], user=False)
    assert rules.sigma_loaded == 4 and not rules.failed
    with Case(_case(tmp_path), read_only=True) as case:
        cur = case.cursor()
        assert findings.ensure(cur, rules) == []
        got = {(f["rule"][-1], f["host"], f["count"]) for f in findings.listing(cur) if f["rule"].startswith("0000")}
    assert got == {("1", "P1", 1), ("2", "P2", 1), ("3", "P3", 2), ("4", "P4", 1)}


def test_a_sigma_finding_keeps_the_rules_id_title_level_attack_tags_and_author(tmp_path: Path) -> None:
    rules_dir = tmp_path / "sigma"
    rules_dir.mkdir()
    (rules_dir / "all_not.yml").write_text(RULES["all_not.yml"].replace("level: medium", "level: medium\nauthor: A. Responder"),
                                           encoding="utf-8")
    rules = findings.load(sigma=[rules_dir], user=False)
    with Case(_case(tmp_path), read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, rules)
        (f,) = findings.listing(cur, rule="00000000-0000-0000-0000-000000000002")
    assert f["title"] == "All of, and not a filter" and f["severity"] == "medium" and f["attack"] == ["T1059.001"]
    assert f["author"] == "A. Responder"


MORE = {
    "b64.yml": ("CommandLine|base64offset|contains: 'IEX'", "powershell -enc " + __import__("base64").b64encode(
        b"xIEX (New-Object Net.WebClient)").decode(), "powershell -enc AAAA"),
    "windash.yml": ("CommandLine|windash|contains: ' -decode '", "certutil /decode a b", "certutil -encode a b"),
    "cased.yml": ("CommandLine|cased|contains: 'MiMi'", "run MiMi now", "run mimi now"),
    "exists.yml": ("OriginalFileName|exists: true", "x.exe", None),
    "gte.yml": ("TerminalSessionId|gte: 2", "x.exe", "y.exe"),
    "fieldref.yml": ("ParentCommandLine|fieldref: CommandLine", "same thing", "other"),
}


@pytest.mark.parametrize("name", sorted(MORE))
def test_each_modifier_matches_its_case_and_not_its_near_miss(tmp_path: Path, name: str) -> None:
    condition, hit, miss = MORE[name]
    (tmp_path / "sigma").mkdir()
    (tmp_path / "sigma" / name).write_text(f"""title: {name}
id: 00000000-0000-0000-0000-0000000000ff
level: low
logsource: {{product: windows, category: process_creation}}
detection:
    sel:
        {condition}
    condition: sel
""", encoding="utf-8")
    s = "Microsoft-Windows-Sysmon/Operational"

    def doc(n: int, host: str, cmd: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {"Image": "C:\\Windows\\System32\\x.exe", "CommandLine": cmd or "",
                                "ProcessGuid": f"{{22222222-0000-0000-0000-00000000000{n}}}", "ProcessId": str(n)}
        if name == "exists.yml" and cmd is not None:
            data["OriginalFileName"] = cmd
        if name == "gte.yml":
            data["TerminalSessionId"] = "3" if host == "P" else "1"
        if name == "fieldref.yml":
            data["ParentCommandLine"] = "same thing"
        return evtx_doc(n, 1, f"2024-05-01T10:0{n}:00Z", host=host, channel=s, provider="Microsoft-Windows-Sysmon",
                        data=data)

    case = tmp_path / "case.duckdb"
    ingest_into(case, [write_jsonl(tmp_path / "e.jsonl", [doc(1, "P", hit), doc(2, "N", miss)])])
    rules = findings.load(sigma=[tmp_path / "sigma"], user=False)
    assert rules.sigma_loaded == 1, rules.failed
    with Case(case, read_only=True) as c:
        cur = c.cursor()
        assert findings.ensure(cur, rules) == []
        hosts = {f["host"] for f in findings.listing(cur) if f["rule"].endswith("ff")}
    assert hosts == {"P"}, name


# -- how a pass is run: long OR lists, repeated values, ranges, event IDs ------------------------------
LISTS = """title: Long lists of alternatives
id: 00000000-0000-0000-0000-0000000000aa
level: low
logsource: {product: windows, category: process_creation}
detection:
    sel_cli:
        CommandLine|contains: ['a.c', 'x(1)', "it's", 'pre*post', 'q?z', 'end$']
    sel_img:
        Image|endswith: ['\\\\one.exe', '\\\\two.exe', '\\\\three.exe', '\\\\four.exe', '\\\\five.exe']
    condition: 1 of sel_*
"""


def _creations(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    s = "Microsoft-Windows-Sysmon/Operational"
    docs = [evtx_doc(n + 1, 1, f"2024-05-01T10:00:{n:02d}Z", host=host, channel=s, provider="Microsoft-Windows-Sysmon",
                     data={"Image": image, "CommandLine": cmd, "ProcessId": str(n + 1),
                           "ProcessGuid": f"{{33333333-0000-0000-0000-{n + 1:012d}}}"})
            for n, (host, image, cmd) in enumerate(rows)]
    case = tmp_path / "case.duckdb"
    ingest_into(case, [write_jsonl(tmp_path / "e.jsonl", docs)])
    return case


def _hits(tmp_path: Path, case: Path, text: str) -> list[tuple[str, int]]:
    (tmp_path / "sigma").mkdir(exist_ok=True)
    (tmp_path / "sigma" / "r.yml").write_text(text, encoding="utf-8")
    rules = sigma.load(tmp_path / "sigma", cache=tmp_path / "cache")
    assert len(rules.rules) == 1 and not rules.failed
    with Case(case, read_only=True) as c:
        cur = c.cursor()
        assert sigma.prepare(cur, rules.rules) == []
        return sorted((str(h), int(r)) for h, r in cur.execute(
            "SELECT e.host, e.record_id FROM sigma_hits JOIN events e USING (eid)").fetchall())


def test_a_long_list_of_alternatives_matches_each_value_as_sigma_does_and_not_its_near_misses(tmp_path: Path) -> None:
    img = "C:\\Windows\\System32\\x.exe"
    rows = [("P", img, "run A.C now"), ("N", img, "run abc now"),             # '.' is a dot, not any character
            ("P", img, "x(1) y"), ("N", img, "x1 y"),                          # parentheses are literal
            ("P", img, "it's here"), ("P", img, "PRE middle POST"),           # a quote; an inner wildcard
            ("N", img, "post then pre"), ("P", img, "qaz"), ("N", img, "qaaz"),  # order; '?' is one character
            ("P", img, "ends with end$ sign"), ("N", img, "the end"),          # '$' is literal
            ("P", "C:\\Tools\\FOUR.EXE", "-"), ("N", "C:\\Tools\\four.exe.bak", "-")]
    hits = _hits(tmp_path, _creations(tmp_path, rows), LISTS)
    expected = sorted((h, n + 1) for n, (h, _, _) in enumerate(rows) if h == "P")
    assert hits == expected


def test_events_with_the_same_values_each_get_their_hit_whatever_the_ranges(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    img = "C:\\Windows\\System32\\x.exe"
    rows = [("P", img, "it's here")] * 5 + [("N", img, "nothing")] * 4 + [("P", "C:\\a\\one.exe", "nothing")] * 3
    case = _creations(tmp_path, rows)
    whole = _hits(tmp_path, case, LISTS)
    monkeypatch.setattr(sigma, "CHUNK", 2)  # six ranges of two events
    monkeypatch.setattr(sigma, "MAX_VALUES", 1)  # and the combinations evaluated after each range
    assert _hits(tmp_path, case, LISTS) == whole
    assert whole == sorted((h, n + 1) for n, (h, _, _) in enumerate(rows) if h == "P")


def test_a_rule_naming_its_event_ids_reads_only_those_and_one_under_not_reads_all(tmp_path: Path) -> None:
    text = """title: Network logon
id: 00000000-0000-0000-0000-0000000000bb
level: low
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4624, LogonType: 3}
    condition: sel
"""
    docs = [evtx_doc(1, 4624, "2024-05-01T10:00:00Z", host="P", channel="Security", data={"LogonType": "3"}),
            evtx_doc(2, 4625, "2024-05-01T10:00:01Z", host="N", channel="Security", data={"LogonType": "3"})]
    case = tmp_path / "case.duckdb"
    ingest_into(case, [write_jsonl(tmp_path / "e.jsonl", docs)])
    assert _hits(tmp_path, case, text) == [("P", 1)]
    assert sigma.load(tmp_path / "sigma", cache=tmp_path / "cache").rules[0].sigma_event_ids == (4624,)
    negated = text.replace("condition: sel", "condition: not sel").replace("bb\n", "bc\n")
    (tmp_path / "sigma" / "r.yml").write_text(negated, encoding="utf-8")
    rule = sigma.load(tmp_path / "sigma", cache=tmp_path / "cache").rules[0]
    assert rule.sigma_event_ids == ()
    assert _hits(tmp_path, case, negated) == [("N", 2)]


def test_an_allowlist_silences_a_sigma_rule_by_its_id_and_leaves_the_others(tmp_path: Path) -> None:
    rules_dir = tmp_path / "sigma"
    rules_dir.mkdir()
    for name in ("all_not.yml", "re_cidr.yml"):
        (rules_dir / name).write_text(RULES[name], encoding="utf-8")
    mine = tmp_path / "rules"
    findings.add_to_allowlist(mine / "allowlist.toml", "00000000-0000-0000-0000-000000000002", "host", "p2")
    case_path = _case(tmp_path)
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, findings.load(sigma=[rules_dir], user=False))
        assert findings.listing(cur, rule="00000000-0000-0000-0000-000000000002")  # P2 before the allowlist
    with Case(case_path, read_only=True) as case:
        cur = case.cursor()
        findings.ensure(cur, findings.load(mine, sigma=[rules_dir], user=False))
        assert not findings.listing(cur, rule="00000000-0000-0000-0000-000000000002")
        assert findings.listing(cur, rule="00000000-0000-0000-0000-000000000003")
