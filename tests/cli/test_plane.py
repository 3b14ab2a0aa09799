"""`specops up`, `deploy` and `down` refuse bad input with one line and a non-zero exit, writing nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.control_plane import PAIR, specops


def _one_line_error(done) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode != 0, done.stdout
    assert done.stderr.strip().count("\n") == 0, done.stderr
    return done.stderr


def _written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()) if home.exists() else []


def test_a_deploy_without_a_running_plane_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".specops"
    error = _one_line_error(specops(home, "deploy", "coder", "--pair", PAIR, "--version", "1"))
    assert "no control plane runs" in error and "specops up" in error
    assert _written(home) == []


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("steps: [10, 50, 100]\nintervall_s: 3\n", "unknown key 'intervall_s'"),
        ("checks:\n  min_acceptance: 0.3\n", "unknown key 'checks.min_acceptance'"),
        ("steps: [50, 10, 100]\n", "steps must be strictly increasing"),
        ("interval_s: soon\n", "interval_s:"),
        ("steps: [10\n", "not YAML"),
    ],
    ids=["unknown-key", "unknown-nested-key", "steps-out-of-order", "wrong-type", "not-yaml"],
)
def test_a_malformed_policy_is_one_line_naming_the_key(tmp_path: Path, policy: str, message: str) -> None:
    home = tmp_path / ".specops"
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    args = ("deploy", "coder", "--pair", PAIR, "--version", "1", "--policy", str(path))
    assert message in _one_line_error(specops(home, *args))
    assert _written(home) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pair", PAIR), "exactly one of --version and --alias"),
        (("--pair", PAIR, "--version", "1", "--alias", "production"), "exactly one of --version and --alias"),
    ],
    ids=["neither", "both"],
)
def test_a_deploy_names_one_version(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    assert message in _one_line_error(specops(tmp_path / ".specops", "deploy", "coder", *args))


def test_a_deployment_name_that_is_no_dns_label_is_refused(tmp_path: Path) -> None:
    error = _one_line_error(specops(tmp_path / ".specops", "deploy", "Bad_Name", "--pair", PAIR, "--version", "1"))
    assert "deployment name 'Bad_Name'" in error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("port: 8000\nreplicas: 2\n", "unknown key 'replicas'"),
        ("record:\n  sample: 0.5\n", "unknown key 'record.sample'"),
        ("device: tpu\n", "device:"),
        ("port: 99999\n", "port:"),
    ],
    ids=["unknown-key", "unknown-nested-key", "bad-device", "bad-port"],
)
def test_a_malformed_config_stops_up_with_one_line(tmp_path: Path, config: str, message: str) -> None:
    home = tmp_path / ".specops"
    path = tmp_path / "specops.yaml"
    path.write_text(config)
    assert message in _one_line_error(specops(home, "up", "--config", str(path)))
    assert _written(home) == []


def test_up_on_a_port_in_use_is_refused_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / ".specops"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = _one_line_error(specops(home, "up", "--port", str(port)))
    assert f"router port {port} is in use" in error
    assert not (home / "plane.pid").exists()


def test_down_without_a_running_plane_says_so(tmp_path: Path) -> None:
    assert "no control plane runs" in _one_line_error(specops(tmp_path / ".specops", "down"))
