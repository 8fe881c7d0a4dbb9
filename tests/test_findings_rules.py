"""Rule files as data: strict validation, the demo incident's findings, and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ingest_into

from engine import Case, findings
from engine.findings.rules import PROJECT_RULES, RuleError, load_file
from fixtures import sessions as writer
from fixtures.incident import incident
from tui.cli import main

RULE = '''[[rule]]
id = "x"
title = "t"
severity = "high"
filter = "eid:4624"
reason = "r"
'''


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_project_rule_file_loads_with_no_failure() -> None:
    rules = findings.load(user=False)
    assert not rules.failed
    assert len(rules.rules) >= 20 and all(r.source.startswith(str(PROJECT_RULES)) for r in rules.rules)


def test_an_unknown_key_names_the_file_the_line_and_the_nearest_valid_key(tmp_path: Path) -> None:
    path = _write(tmp_path, RULE + 'severety = "low"\n')
    with pytest.raises(RuleError) as err:
        load_file(path)
    assert str(err.value).startswith(f"{path}:7: unknown key 'severety'") and 'did you mean "severity"' in str(err.value)


def test_a_bad_severity_a_bad_window_and_a_bad_filter_are_each_named(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r":4: rule x: severity 'hgih' is not one of .*did you mean \"high\""):
        load_file(_write(tmp_path, RULE.replace('"high"', '"hgih"')))
    with pytest.raises(RuleError, match="window '10 minutes' is not a duration"):
        load_file(_write(tmp_path, RULE + 'window = "10 minutes"\n'))
    with pytest.raises(RuleError, match=r":5: rule x: .*eventid"):
        load_file(_write(tmp_path, RULE.replace("eid:4624", "eventid:4624")))
    with pytest.raises(RuleError, match="needs one of filter or sql"):
        load_file(_write(tmp_path, RULE.replace('filter = "eid:4624"\n', "")))


def test_a_broken_user_file_is_reported_and_the_other_rules_still_load(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[[rule]]\nid = \n", encoding="utf-8")
    (tmp_path / "good.toml").write_text(RULE, encoding="utf-8")
    rules = findings.load(tmp_path, user=False)
    assert rules.get("x") is not None and rules.get("lsass-access") is not None
    assert len(rules.failed) == 1 and str(tmp_path / "bad.toml") in rules.failed[0]


def test_a_query_that_fails_or_an_explanation_naming_a_missing_column_fails_that_rule_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(RULE.replace('reason = "r"', 'reason = "{nothere}"') + '''
[[rule]]
id = "y"
title = "t"
severity = "low"
sql = "SELECT eid FROM no_such_table"
reason = "r"
''', encoding="utf-8")
    case = tmp_path / "case.duckdb"
    ingest_into(case, [writer.write(tmp_path / "f", shapes=["evtx_jsonl"], evs=incident(noise=0))["evtx_jsonl"]])
    with Case(case, read_only=True) as c:
        cur = c.cursor()
        failed = findings.ensure(cur, findings.load(tmp_path, user=False))
        assert any("rule x: reason names {nothere}" in f for f in failed)
        assert any("rule y: its query fails" in f for f in failed)
        assert findings.listing(cur, rule="lsass-access")


# -- the demo incident ---------------------------------------------------------------------------------
def _findings_of(tmp_path: Path, noise: int) -> list[dict[str, Any]]:
    case = tmp_path / f"demo-{noise}.duckdb"
    ingest_into(case, [writer.write(tmp_path / f"files-{noise}", shapes=["evtx_jsonl"],
                                    evs=incident(noise=noise))["evtx_jsonl"]])
    with Case(case, read_only=True) as c:
        cur = c.cursor()
        findings.ensure(cur, findings.load(user=False))
        return findings.listing(cur)


def test_the_demo_incident_raises_what_it_was_built_to_show_and_its_noise_raises_nothing(tmp_path: Path) -> None:
    quiet = _findings_of(tmp_path, 0)
    noisy = _findings_of(tmp_path, 300)

    def shape(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((f["rule"], f["host"], f["count"]) for f in found)

    assert shape(noisy) == shape(quiet)
    rules = {f["rule"] for f in quiet}
    # The story (fixtures/incident.py): a spray from 10.0.0.66 that worked for alice, her NTLM
    # logon to DC01, recon commands, PowerShell downloading, rundll32 dumping lsass (Sysmon 10 and
    # 4656), PsExec to FS01 with an account, a group change and a task made there, logs cleared.
    assert {"password-spray", "success-after-failures", "ntlm-network-logon", "attacker-commands",
            "powershell-suspicious-script", "lsass-access", "lsass-handle-audit", "new-service",
            "user-created", "privileged-group-add", "scheduled-task", "log-cleared"} <= rules
    (lsass,) = [f for f in quiet if f["rule"] == "lsass-access"]
    assert "rundll32.exe" in lsass["reason"] and "0x1410" in lsass["reason"]
    cmds = [f for f in quiet if f["rule"] == "attacker-commands" and "whoami" in f["reason"]]
    assert cmds and all(f["logon_id"] is not None for f in cmds)


# -- the command line ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("demo-findings")
    case = tmp / "case.duckdb"
    ingest_into(case, [writer.write(tmp / "f", shapes=["evtx_jsonl"], evs=incident(noise=50))["evtx_jsonl"]])
    return case


def test_findings_jsonl_holds_the_output_contract(demo_case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["findings", str(demo_case), "--rule", "lsass-access", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["rule"] == "lsass-access" for r in rows)
    for key in ("rule", "title", "severity", "attack", "host", "user", "first", "last", "count", "reason", "eids",
                "session", "process"):
        assert key in rows[0]
    assert rows[0]["attack"] == ["T1003.001"] and rows[0]["process"]


def test_findings_min_severity_and_a_filter_narrow_the_list(demo_case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["findings", str(demo_case), "--min-severity", "critical", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["severity"] for r in rows} == {"critical"}
    assert main(["findings", str(demo_case), "host:FS01*", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["host"].startswith("FS01") for r in rows)


def test_an_unknown_rule_gets_a_suggestion(demo_case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["findings", str(demo_case), "--rule", "lsas-access"]) == 2
    assert 'did you mean "lsass-access"' in capsys.readouterr().err


def test_rules_list_shows_every_rule_and_a_failed_file_with_its_reason(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.toml").write_text('[[rule]]\nid = "z"\ntitle = "t"\nseverity = "high"\nfilter = "eid:1"\n'
                                       'reason = "r"\ncolour = "red"\n', encoding="utf-8")
    assert main(["rules", "list", "--rules", str(tmp_path), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"lsass-access", "log-cleared", "attacker-commands"} <= {r["rule"] for r in rows}
    (bad,) = [r for r in rows if r["status"].startswith("failed")]
    assert "bad.toml:7: unknown key 'colour'" in bad["status"]


def test_rules_show_prints_the_rule_its_sql_and_its_allowlist(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "show", "lsass-access"]) == 0
    out = capsys.readouterr().out
    assert "T1003.001" in out and "GrantedAccess" in out and "msmpeng.exe" in out and "event_id = 10" in out


def test_coverage_says_what_a_host_cannot_show(demo_case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", str(demo_case), "--format", "jsonl"]) == 0
    hosts = {r["host"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    ws07 = next(v for k, v in hosts.items() if k.startswith("WS07"))
    assert ws07["sysmon_ids"] and ws07["process_command_lines"] is not None
    dc = next(v for k, v in hosts.items() if k.startswith("DC01"))
    assert any(r["rule"] == "lsass-access" for r in dc["not_visible"])  # no Sysmon on the DC
    assert main(["coverage", str(demo_case), "--host", ws07["host"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(ws07["host"]) and "channels: " in out and "Sysmon: " in out
