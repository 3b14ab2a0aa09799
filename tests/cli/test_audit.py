"""`specops audit verify|log|policy` and `specops approve` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from specops.governance import approvals, audit
from specops.governance import store as store_module


def _specops(*args: str, url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPECOPS_DATABASE_URL": url, "SPECOPS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "specops.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def filled(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'governance.db'}"
    log = audit.AuditLog(store_module.open_store(url))
    for number in range(5):
        log.append(actor="alice", action="alias.set", subject=f"pair:p{number % 2}", payload={"n": number})
    return url


def test_verify_exits_zero_on_an_intact_chain(filled: str, tmp_path: Path) -> None:
    done = _specops("audit", "verify", url=filled, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout
    assert "5 events" in done.stdout


def test_verify_exits_one_naming_the_first_bad_record(filled: str, tmp_path: Path) -> None:
    opened = store_module.open_store(filled)
    with opened.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        bad_id = conn.exec_driver_sql("SELECT id FROM audit_events WHERE seq = 3").scalar_one()
    done = _specops("audit", "verify", url=filled, home=tmp_path)
    assert done.returncode == 1
    assert f"first bad record id {bad_id}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_log_lists_events_about_one_subject(filled: str, tmp_path: Path) -> None:
    done = _specops("audit", "log", "--subject", "pair:p1", "--json", url=filled, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"seq"') == 2
    table = _specops("audit", "log", url=filled, home=tmp_path)
    assert table.returncode == 0
    assert "alias.set" in table.stdout


def test_an_unreachable_database_is_one_line_and_exit_one(tmp_path: Path) -> None:
    done = _specops("audit", "verify", url=f"postgresql://nobody@/x?host={tmp_path}&port=1", home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach the governance store")
    assert len(done.stderr.strip().splitlines()) == 1


def test_policy_turns_approval_on_and_require_approval_then_refuses(filled: str, tmp_path: Path) -> None:
    done = _specops("audit", "policy", "--require-approval", "--by", "carol", url=filled, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "required" in done.stdout
    opened = store_module.open_store(filled)
    assert approvals.approval_required(opened)
    assert audit.AuditLog(opened).events("policy:require_approval")[0].actor == "carol"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("audit", "log", "--limit", "-5"), "Invalid value for '--limit'"),
        (("status", "--bogus"), "No such option: --bogus"),
        (("slo", "check"), "Missing option '--spec'"),
    ],
    ids=["out-of-range", "unknown-option", "missing-option"],
)
def test_usage_errors_are_one_line_and_exit_two(
    filled: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = _specops(*args, url=filled, home=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
