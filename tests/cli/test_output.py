"""What `specops status`, `history` and `versions` print: JSON for programs, tables that fit 80 columns, a live view."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from specops.cli import app as cli_app
from specops.cli import output, registry
from specops.registry.mlflow_registry import PairVersion

ELLIPSIS = "…"


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """``specops ARGS`` in this process; its stdout (it must exit 0)."""
    monkeypatch.setattr(sys, "argv", ["specops", *args])
    try:
        cli_app.main()
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def _versions() -> list[PairVersion]:
    figures = {
        "qualification.passed": "true",
        "qualification.lossless": "true",
        "qualification.acceptance_rate": "0.9123",
        "qualification.mean_accepted_length": "3.210",
        "qualification.speedup": "1.850",
        "qualification.speedup_sampled": "1.420",
        "qualification.min_speedup": "1",
        "pair.target_sha256": "abcdef0123456789",
        "pair.draft_sha256": "0123456789abcdef",
        "note": "distilled on the target's own writing",
    }
    refused = {"qualification.passed": "false", "qualification.lossless": "false", "note": "mismatched draft"}
    return [
        PairVersion(
            "stdlib-coder", "12", figures, ["production", "previous-production"], created_at="2025-03-04T05:06:07Z"
        ),
        PairVersion("stdlib-coder", "13", refused, [], created_at="2025-03-05T00:00:00Z"),
    ]


def test_status_json_is_a_list_of_the_table_fields_with_numbers_as_numbers(
    deployment_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = json.loads(_run(["status", "--output", "json"], monkeypatch, capsys))
    assert [record["deployment"] for record in records] == ["checkout-assistant", "demo"]
    assert records[0] == {
        "deployment": "checkout-assistant",
        "pair": "stdlib-coder-distilled",
        "phase": "Progressing",
        "stable_version": "12",
        "canary_version": "13",
        "weight_percent": 25,
        "seconds_without_verdict": 42.0,
        "last_verdict": "inconclusive",
        "last_reason": "3 of 20 samples in the window so far",
    }
    assert records[1]["canary_version"] is None and records[1]["seconds_without_verdict"] is None


def test_history_json_holds_transitions_and_audit_events_with_iso_utc_times(
    deployment_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(_run(["history", "checkout-assistant", "-o", "json"], monkeypatch, capsys))
    assert document["transitions"][0] == {
        "time": "2025-01-01T00:00:00Z",
        "from_phase": "Pending",
        "to_phase": "Progressing",
        "weight_percent": 10,
        "reason": "canary 13 started at 10%",
    }
    assert [event["action"] for event in document["audit_events"]] == ["rollout.start_canary", "rollout.pause"]
    assert [event["seq"] for event in document["audit_events"]] == [1, 2]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"]) for event in document["audit_events"])


def test_versions_json_records_carry_numbers_booleans_and_iso_times(capsys: pytest.CaptureFixture[str]) -> None:
    records = [registry.version_record(item) for item in _versions()]
    output.show(records, registry.VERSION_COLUMNS, title="stdlib-coder: pair versions", output=output.OutputFormat.JSON)
    printed = json.loads(capsys.readouterr().out)
    assert printed[0] == {
        "version": 12,
        "aliases": ["production", "previous-production"],
        "qualified": True,
        "acceptance_rate": 0.9123,
        "mean_accepted_length": 3.21,
        "speedup": 1.85,
        "speedup_sampled": 1.42,
        "min_speedup": 1.0,
        "lossless": True,
        "target_sha256": "abcdef0123456789",
        "draft_sha256": "0123456789abcdef",
        "registered_at": "2025-03-04T05:06:07Z",
        "note": "distilled on the target's own writing",
    }
    assert printed[1]["qualified"] is False and printed[1]["acceptance_rate"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["status"],
            ["checkout-assistant", "stdlib-coder-distilled", "Progressing", "RolledBack", "25%", "inconclusive"],
        ),
        (
            ["history", "checkout-assistant"],
            [
                "2025-01-01 00:00:00",
                "Pending",
                "Progressing",
                "rollout.start_canary",
                "rollout-controller",
                "cli:alice",
            ],
        ),
    ],
    ids=["status", "history"],
)
def test_deployment_tables_stay_whole_in_80_columns(
    args: list[str],
    expected: list[str],
    deployment_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    text = _run(args, monkeypatch, capsys)
    assert ELLIPSIS not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert all(value in text for value in expected), text


@pytest.mark.parametrize("width", [80, 200], ids=["80 columns", "200 columns"])
def test_the_versions_table_stays_whole_at_any_width(width: int) -> None:
    records = [registry.version_record(item) for item in _versions()]
    console = Console(width=width, record=True)
    console.print(output.listing(records, registry.VERSION_COLUMNS, title="stdlib-coder: pair versions", width=width))
    text = console.export_text()
    assert ELLIPSIS not in text
    for value in ("12", "13", "production, previous-production", "passed", "refused", "0.9123", "3.210"):
        assert value in text
    for value in ("1.850× / 1.420×", "abcdef01 / 01234567", "2025-03-04 05:06", "mean len", "registered (UTC)"):
        assert value in text


def test_status_watch_refreshes_live_until_ctrl_c_then_exits_zero(deployment_home: Path) -> None:
    env = {**os.environ, "COLUMNS": "120", "FORCE_COLOR": "1"}  # a terminal as far as rich can tell
    process = subprocess.Popen(
        [sys.executable, "-m", "specops.cli", "status", "--watch", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = b""
    deadline = time.monotonic() + 60
    while b"RolledBack" not in seen and time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            seen += os.read(process.stdout.fileno(), 65536)  # type: ignore[union-attr]
    time.sleep(0.5)  # at least one refresh after the first view
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=30)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", (seen + rest).decode())
    assert process.returncode == 0, errors.decode()
    assert "checkout-assistant" in text and "RolledBack" in text and "deployments" in text
    assert b"Traceback" not in errors
