"""`specops demo` end to end, as a user runs it: real servers, real registry, real audit log."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def specops(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPECOPS_HOME": str(home), "COLUMNS": "160"}
    env.pop("SPECOPS_DATABASE_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "specops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=home.parent,
    )


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo") / ".specops"
    done = specops(home, "demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home


def test_demo_rolls_back_the_mismatched_canary_and_reports_it(demo_home: Path) -> None:
    report = (demo_home / "demo-report.md").read_text()
    assert "result: **RolledBack**" in report
    assert "production alias: v1; canary alias: none" in report
    assert "audit chain: intact" in report
    assert "acceptance_rate" in report  # the failed check, with its measured value
    assert "| tokens per step |" in report  # both roles measured on what speculation delivers
    assert "(qualification of the first version; the target alone is 1×)" in report  # does it pay here?


def test_status_and_history_show_the_rollback(demo_home: Path) -> None:
    status = specops(demo_home, "status")
    assert status.returncode == 0 and "RolledBack" in status.stdout
    history = specops(demo_home, "history", "demo")
    assert history.returncode == 0
    assert "rollout.rollback" in history.stdout and "rollout.start_canary" in history.stdout


def test_rolling_back_again_is_refused_with_one_line(demo_home: Path) -> None:
    again = specops(demo_home, "rollback", "demo")
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0 and "nothing to rollback" in again.stderr


def test_unknown_deployment_is_a_one_line_error(demo_home: Path) -> None:
    done = specops(demo_home, "rollback", "nope")
    assert done.returncode == 1 and "unknown deployment 'nope'" in done.stderr


def test_audit_verify_passes_then_detects_an_edited_row(demo_home: Path, tmp_path: Path) -> None:
    assert specops(demo_home, "audit", "verify").returncode == 0
    copy = tmp_path / "governance.db"
    copy.write_bytes((demo_home / "governance.db").read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    tampered = specops(demo_home, "audit", "verify", "--database-url", f"sqlite:///{copy}")
    assert tampered.returncode == 1 and "first bad record" in tampered.stderr
