"""The findings view: where to look first, worst first, on the timeline's widget (TableViewScreen).

`Enter` shows a finding's events in the timeline (`finding:N`); `s` / `T` go to its logon session
or its process; `x` puts a value of the finding on its rule's allowlist in the user's rules
directory, and the findings are computed again without it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work

from engine import findings, views
from engine.filters import Compiled

from ..safe_text import escape, fit
from ..widgets.columns import FINDING_COLUMNS
from ..widgets.rows import FindingRows
from .base import keymap_bindings
from .prompt import PromptScreen
from .table_view import TableViewScreen


class FindingsScreen(TableViewScreen):
    BINDINGS = keymap_bindings("findings")
    DEFAULT_CSS = """
    FindingsScreen #findings-info { height: 3; background: $panel; padding: 0 1; }
    """
    NOUN = "findings"
    TABLE = "findings"
    COLUMNS = FINDING_COLUMNS
    FILTER_HELP = "rule: host: user: severity:high attack:T1003* after: words"
    FILTER_EXAMPLE = "severity:high,critical"

    def source(self) -> FindingRows:
        return FindingRows()

    def compile(self, text: str) -> Compiled:
        return findings.compile_finding_filter(text)  # type: ignore[no-any-return]

    def resolve(self, cur: Any, text: str) -> views.View:
        return findings.resolve(cur, text)  # type: ignore[no-any-return]

    def prepare(self) -> None:
        # Rules or allowlists changed since the case was opened: computed again, in the case.
        rules = findings.load()
        with self.session.cursor() as cur:
            stale = not findings.current(cur, rules)
        if stale:
            self.session.write(lambda case: findings.refresh(case, rules))
        with self.session.cursor() as cur:
            failed = findings.failed_rules(cur)
        if failed:
            self.app.call_from_thread(self.message, f"{len(failed)} rule(s) not run: {failed[0]}", error=True)

    def value_source(self, row: dict[str, Any], column: str) -> str | None:
        return {"first": None, "count": None, "attack": "attack"}.get(column, column)

    def info(self, row: dict[str, Any] | None) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        if row is None:
            return out
        width = max(20, self.app.size.width - 2)
        span = f"{row['first']:%Y-%m-%d %H:%M:%S}" + (f" → {row['last']:%Y-%m-%d %H:%M:%S}"
                                                      if row["last"] != row["first"] else "")
        by = f" · by {row['author']}" if row.get("author") else ""
        head = (f"#{row['id']} {row['severity'].upper()} {row['title']} · {' '.join(row['attack'] or [])} · "
                f"{row['count']} hit(s) · {span}{by}")
        out.append(fit(escape(head), width) + "\n", style="bold")
        out.append(fit(escape(row["reason"] or ""), width) + "\n")
        keys = self.keymap
        links = [f"{keys.display('findings', 'open')} events"]
        if row.get("logon_id") is not None:
            links.append(f"{keys.display('findings', 'session')} session 0x{int(row['logon_id']):x}")
        if row.get("process") is not None or row.get("logon_id") is not None:
            links.append(f"{keys.display('findings', 'tree')} process tree")
        links.append(f"{keys.display('findings', 'allow')} allowlist a value")
        links.append(f"{keys.display('findings', 'coverage')} coverage")
        out.append(fit(" · ".join(links), width), style="dim")
        return out

    # -- leaving ------------------------------------------------------------------------------------
    def _row(self) -> dict[str, Any] | None:
        row = self.table.current_row()
        if row is None:
            self.message("no finding under the cursor yet", error=True)
        return row

    def action_open(self) -> None:
        row = self._row()
        if row is None:
            return
        self.app.pop_screen()
        self.app.show_events(f"finding:{row['id']}", f"finding #{row['id']}: {row['rule']}")  # type: ignore[attr-defined]

    def action_session(self) -> None:
        from engine.sessions import SessionKey

        row = self._row()
        if row is None:
            return
        if row.get("logon_id") is None or row.get("boot") is None:
            self.message("this finding names no single logon session", error=True)
            return
        self.app.show_sessions_at(SessionKey(str(row["host"]), int(row["boot"]), int(row["logon_id"])))  # type: ignore[attr-defined]

    def action_tree(self) -> None:
        row = self._row()
        if row is None:
            return
        if row.get("process") is not None:
            self.app.show_tree(int(row["process"]))  # type: ignore[attr-defined]
            return
        self._tree_of(row)

    @work(thread=True, group="findings-tree", exclusive=True, exit_on_error=False)
    def _tree_of(self, row: dict[str, Any]) -> None:
        from engine import lineage

        try:
            with self.session.busy("finding's process") as (cur, _job):
                node = None
                for eid in row["eids"][:50]:
                    node = lineage.node_of_event(cur, int(eid))
                    if node is not None:
                        break
                if node is None and row.get("logon_id") is not None and row.get("boot") is not None:
                    node = lineage.first_of_session(cur, str(row["host"]), int(row["boot"]), [int(row["logon_id"])])
        except Exception as exc:
            self.app.call_from_thread(self.message, f"process tree failed: {exc}", error=True)
            return
        if node is None:
            self.app.call_from_thread(self.message, "no process the logs show is behind this finding", error=True)
        else:
            self.app.call_from_thread(self.app.show_tree, node)  # type: ignore[attr-defined]

    def action_coverage(self) -> None:
        from .coverage import CoverageScreen

        self.app.push_screen(CoverageScreen(self.session, self.keymap))

    # -- allowlist ----------------------------------------------------------------------------------
    def _allow_value(self, row: dict[str, Any], rule: Any) -> tuple[str, str] | None:
        """The value `x` offers: the focused column's (host, user), else the first single value of
        the rule's grouping keys, then of the columns that usually say who or what acted."""
        column = self.table.focused_column_name()
        if column in ("host", "user") and row.get(column) and "," not in str(row[column]):
            return str(column), str(row[column])
        values = dict(row.get("values") or {})
        values.setdefault("user", row.get("user"))
        order = [k for k in rule.group_by if k not in ("host", "logon_id", "process")]
        order += ["image", "source", "service", "account", "task", "member", "user"]
        for key in order:
            value = values.get(key)
            if isinstance(value, list):
                value = value[0] if len(value) == 1 else None
            if isinstance(value, str) and value and "," not in value:
                return key, value
        if row.get("host") and "," not in str(row["host"]):
            return "host", str(row["host"])
        return None

    def action_allow(self) -> None:
        row = self._row()
        if row is None:
            return
        rules = findings.load()
        rule = rules.get(str(row["rule"]))
        if rule is None:
            self.message(f"rule {row['rule']} is not loaded any more", error=True)
            return
        found = self._allow_value(row, rule)
        if found is None:
            self.message("this finding has no value to allowlist", error=True)
            return
        column, value = found
        path = rules.allowlist_path or findings.user_rules_dir() / "allowlist.toml"

        def check(text: str) -> tuple[bool, str]:
            name, sep, glob = text.partition("=")
            if not sep or not name.strip() or not glob.strip():
                return False, "COLUMN = VALUE (a glob: * matches anything)"
            return True, ""

        prompt = PromptScreen(f"allowlist for {rule.id} in {path}  (COLUMN = VALUE; * matches anything)",
                              initial=f"{column} = {value}", validate=check)
        self.app.push_screen(prompt, lambda text: self._allow_entered(rule.id, path, text))

    def _allow_entered(self, rule_id: str, path: Any, text: str | None) -> None:
        if not text:
            return
        column, _, glob = text.partition("=")
        self._allow_worker(rule_id, path, column.strip(), glob.strip())

    @work(thread=True, group="findings-allow", exclusive=True, exit_on_error=False)
    def _allow_worker(self, rule_id: str, path: Any, column: str, glob: str) -> None:
        try:
            findings.add_to_allowlist(path, rule_id, column, glob)
            rules = findings.load()
            self.session.write(lambda case: findings.refresh(case, rules))
            with self.session.cursor() as cur:
                failed = findings.failed_rules(cur)
        except Exception as exc:  # a bad allowlist or a failed query: say so
            self.app.call_from_thread(self.message, f"allowlist failed: {exc}", error=True)
            return
        mine = [f for f in failed if f" {rule_id}:" in f or f"[{rule_id}]" in f]
        self.app.call_from_thread(self._allowed, rule_id, column, glob, mine)

    def _allowed(self, rule_id: str, column: str, glob: str, failed: list[str]) -> None:
        if failed:
            self.go(self.filters, then_say=(f"allowlist saved, but: {failed[0]}", True))
        else:
            self.go(self.filters, then_say=(f"{rule_id}: {column} = {glob} allowlisted; findings computed again",
                                            False))
