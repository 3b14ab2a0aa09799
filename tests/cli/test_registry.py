"""`specops register`, `versions`, `approve` and `qualify` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_checkpoints import PROMPTS


def _specops(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPECOPS_HOME": str(home), "COLUMNS": "200"}
    env.pop("SPECOPS_DATABASE_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "specops.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_register_list_approve_and_refuse_from_the_command_line(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS[:2]))
    common = ("--prompts", str(prompts), "--max-new-tokens", "6")
    fixed_k = tmp_path / "pair.yaml"
    fixed_k.write_text("speculation:\n  adaptive: false\ntarget:\n  licence: Apache-2.0\n")

    done = _specops(
        "register", "tiny", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_copy),
        *common, "--config", str(fixed_k), "--note", "good", home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "registered tiny version 1" in done.stdout

    refused = _specops(
        "register", "tiny", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_random),
        *common, home=home,
    )  # fmt: skip
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "under the floor" in refused.stderr

    lowered = _specops(
        "register", "tiny", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_random),
        *common, "--min-acceptance", "0", "--note", "mismatched", home=home,
    )  # fmt: skip
    assert lowered.returncode == 0, lowered.stderr

    listed = _specops("versions", "tiny", home=home)
    assert listed.returncode == 0, listed.stderr
    assert "mismatched" in listed.stdout
    assert "1.0000" in listed.stdout
    as_json = json.loads(_specops("versions", "tiny", "--output", "json", home=home).stdout)
    assert [(item["version"], item["qualified"], item["note"]) for item in as_json] == [
        (2, True, "mismatched"),
        (1, True, "good"),
    ]
    assert as_json[1]["acceptance_rate"] == 1.0 and as_json[1]["registered_at"].endswith("Z")

    missing = _specops("approve", "tiny", "7", "--by", "dave", home=home)
    assert missing.returncode == 1
    assert "no version 7" in missing.stderr
    approved = _specops("approve", "tiny", "1", "--by", "dave", "--note", "CAB-1", home=home)
    assert approved.returncode == 0, approved.stderr

    log = _specops("audit", "log", "--json", home=home)
    actions = [
        line.split('"action": ')[1].strip().strip('",') for line in log.stdout.splitlines() if '"action"' in line
    ]
    assert actions == ["version.register", "version.refuse", "version.register", "version.approve"]
    assert _specops("audit", "verify", home=home).returncode == 0


def test_bad_paths_give_one_line_and_exit_one(tmp_path: Path) -> None:
    done = _specops("register", "tiny", "--target", str(tmp_path / "a"), "--draft", str(tmp_path / "b"), home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: target checkpoint {tmp_path / 'a'} does not exist"


@pytest.mark.slow
def test_qualify_reports_and_exits_by_the_verdict(tiny_pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]))
    report = tmp_path / "report.json"
    good = _specops(
        "qualify", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_copy),
        "--prompts", str(prompts), "--max-new-tokens", "6", "--report", str(report), home=tmp_path,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert json.loads(report.read_text())["lossless"] is True
    assert json.loads(report.read_text())["speedup_sampled"] > 0
    assert "speedup over target alone, sampled" in good.stdout
    slow = _specops(
        "qualify", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_copy),
        "--prompts", str(prompts), "--max-new-tokens", "6", "--min-speedup", "100", home=tmp_path,
    )  # fmt: skip
    assert slow.returncode == 1
    assert len(slow.stderr.strip().splitlines()) == 1
    assert "speedup is under the floor 100×" in slow.stderr
    foreign = _specops(
        "qualify", "--target", str(tiny_pairs.target), "--draft", str(tiny_pairs.draft_foreign),
        "--prompts", str(prompts), home=tmp_path,
    )  # fmt: skip
    assert foreign.returncode == 1
    assert "tokenizers differ" in foreign.stderr


@pytest.mark.parametrize("command", ["register", "qualify"])
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--min-speedup", "-1", "error: --min-speedup must be >= 0 (0 records without judging), got -1"),
        ("--min-acceptance", "2", "error: --min-acceptance must be within [0, 1], got 2"),
    ],
    ids=["negative speedup floor", "acceptance floor above one"],
)
def test_an_out_of_range_floor_gives_one_line_and_exits_one(  # type: ignore[no-untyped-def]
    tmp_path: Path, command: str, flag: str, value: str, message: str
) -> None:
    name = ("tiny",) if command == "register" else ()
    done = _specops(
        command, *name, "--target", str(tmp_path / "a"), "--draft", str(tmp_path / "b"), flag, value, home=tmp_path
    )
    assert done.returncode == 1
    assert done.stderr.strip() == message
