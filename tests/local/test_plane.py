"""`specops up` + `specops deploy` as a user runs them: real processes on loopback, the official OpenAI
client, the demo's good pair (v1) and its mismatched draft (v2). One plane serves the module's tests in
order: deploy → canary rolled back under traffic → a second canary held → crash → plane killed and
restarted → rollback by CLI → down."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from specops.local.state_files import FileStateStore
from specops.pairs.demo import DemoPairs, demo_prompts
from specops.rollout.model import Phase
from tests.support.control_plane import FAST_POLICY, PAIR, PlaneProcess, register_demo_versions, server_pids, specops
from tests.support.polling import wait_for

pytestmark = pytest.mark.slow
HELD_POLICY = FAST_POLICY.replace("interval_s: 3", "interval_s: 600").replace("deadline_s: 60", "deadline_s: 3600")
"""A canary that stays at its first step for the whole module."""


class Plane:
    """The module's plane, its state folder and the versions registered in it."""

    def __init__(self, home: Path, process: PlaneProcess, versions: tuple[str, str]) -> None:
        self.home, self.process = home, process
        self.good, self.bad = versions

    def state(self):  # type: ignore[no-untyped-def]
        return FileStateStore(self.home).require("coder")

    def policy(self, text: str) -> Path:
        path = self.home.parent / f"policy-{abs(hash(text))}.yaml"
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, demo_pairs: DemoPairs) -> Iterator[Plane]:
    home = tmp_path_factory.mktemp("plane") / ".specops"
    versions = register_demo_versions(home, demo_pairs)
    process = PlaneProcess(home)
    process.start()
    yield Plane(home, process, versions)
    process.stop()


def openai_client(plane: Plane):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=plane.process.base_url, api_key="unused", max_retries=0, timeout=120)


def test_the_first_deploy_goes_to_production_and_answers_the_openai_client(plane: Plane) -> None:
    done = specops(plane.home, "deploy", "coder", "--pair", PAIR, "--version", plane.good)
    assert done.returncode == 0, done.stderr
    assert f"v{plane.good} in production" in done.stdout
    client = openai_client(plane)
    assert [model.id for model in client.models.list()] == ["coder"]
    completion = client.completions.create(model="coder", prompt="def main(", max_tokens=8, temperature=0)
    assert completion.choices[0].text and completion.usage.completion_tokens > 0
    streamed = client.completions.create(model="coder", prompt="import os\n", max_tokens=8, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices)
    chat = client.chat.completions.create(
        model="coder", messages=[{"role": "user", "content": "for i in"}], max_tokens=8
    )
    assert chat.choices[0].message.content is not None


def test_a_request_for_an_unknown_model_is_a_404_naming_the_deployments(plane: Plane) -> None:
    answer = httpx.post(f"{plane.process.base_url}/completions", json={"model": "nope", "prompt": "x"})
    assert answer.status_code == 404 and "deployed: coder" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pair", "no-such-pair", "--version", "1"), "no-such-pair"),
        (("--pair", PAIR, "--version", "99"), "has no version 99 (registered: 1, 2)"),
        (("--pair", PAIR, "--alias", "nope"), "has no alias 'nope'"),
    ],
    ids=["unknown-pair", "unknown-version", "unknown-alias"],
)
def test_a_deploy_of_what_is_not_registered_is_one_line_and_writes_nothing(
    plane: Plane, args: tuple[str, ...], message: str
) -> None:
    before = plane.state()
    done = specops(plane.home, "deploy", "coder", *args)
    assert done.returncode == 1 and message in done.stderr and done.stderr.strip().count("\n") == 0
    assert plane.state() == before


def test_a_mismatched_canary_is_rolled_back_while_every_client_request_succeeds(plane: Plane) -> None:
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    prompts = itertools.cycle(demo_prompts(32, 48))  # the demo's traffic: code the mismatched draft gets wrong

    def client_loop() -> None:
        client = openai_client(plane)
        while not stop.is_set():
            try:
                client.completions.create(model="coder", prompt=next(prompts), max_tokens=32, temperature=0)
                outcomes["ok"] += 1
            except Exception as error:  # counted: the assertion below wants none
                outcomes[type(error).__name__] += 1

    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        policy = plane.policy(FAST_POLICY)
        done = specops(plane.home, "deploy", "coder", "--pair", PAIR, "--version", plane.bad, "--policy", str(policy))
        assert done.returncode == 0, done.stderr
        assert f"v{plane.bad} canary at 10%" in done.stdout
        deadline = time.monotonic() + 120
        while plane.state().phase is not Phase.ROLLED_BACK and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # requests after the rollback, too
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
    state = plane.state()
    assert (state.phase, state.stable_version, state.canary_version) == (Phase.ROLLED_BACK, plane.good, None)
    assert outcomes["ok"] > 10 and sum(outcomes.values()) == outcomes["ok"], outcomes
    metrics = httpx.get(f"http://127.0.0.1:{plane.process.port}/metrics").text
    assert re.search(r'specops_router_requests_total\{code="200",deployment="coder",role="canary"\} [1-9]', metrics)
    assert 'specops_rollout_transitions_total{deployment="coder",phase="RolledBack"} 1.0' in metrics


def test_a_second_deploy_while_a_canary_runs_is_refused(plane: Plane) -> None:
    policy = plane.policy(HELD_POLICY)
    done = specops(plane.home, "deploy", "coder", "--pair", PAIR, "--version", plane.bad, "--policy", str(policy))
    assert done.returncode == 0 and "canary at 10%" in done.stdout, done.stderr
    request = (plane.home / "plane" / "requests" / "coder.json").read_text()
    again = specops(plane.home, "deploy", "coder", "--pair", PAIR, "--version", plane.good)
    assert again.returncode == 1 and "promote, roll back or wait" in again.stderr
    assert again.stderr.strip().count("\n") == 0
    assert (plane.home / "plane" / "requests" / "coder.json").read_text() == request


def test_a_crashed_server_is_restarted_and_counted_in_status_and_metrics(plane: Plane) -> None:
    assert plane.process.process is not None
    canary = next(pid for pid in server_pids(plane.process.process.pid) if _serves(pid, plane.bad, "canary"))
    import os
    import signal

    os.kill(canary, signal.SIGKILL)
    deadline = time.monotonic() + 90
    metrics = ""
    while time.monotonic() < deadline:
        metrics = httpx.get(f"http://127.0.0.1:{plane.process.port}/metrics").text
        if 'specops_server_restarts_total{deployment="coder",role="canary"} 1.0' in metrics:
            break
        time.sleep(0.5)
    assert 'specops_server_crashes_total{deployment="coder",role="canary"} 1.0' in metrics
    assert 'specops_server_restarts_total{deployment="coder",role="canary"} 1.0' in metrics
    status = specops(plane.home, "status")
    assert status.returncode == 0
    assert f"coder: canary server v{plane.bad} crashed 1×, restarted 1×, up" in status.stdout
    assert plane.state().phase is Phase.PROGRESSING


def test_a_killed_plane_resumes_the_canary_without_a_duplicate_transition(plane: Plane) -> None:
    before = plane.state()
    plane.process.kill()
    plane.process.start()
    time.sleep(3)  # a few rounds
    after = plane.state()
    assert (after.phase, after.canary_version, after.weight) == (Phase.PROGRESSING, plane.bad, before.weight)
    assert after.history == before.history
    client = openai_client(plane)
    assert client.completions.create(model="coder", prompt="x = ", max_tokens=4).choices[0].text is not None
    assert specops(plane.home, "audit", "verify").returncode == 0


def test_a_rollback_by_cli_reaches_the_running_plane_and_down_stops_it(plane: Plane) -> None:
    done = specops(plane.home, "rollback", "coder")
    assert done.returncode == 0 and "manual rollback requested" in done.stdout, done.stderr
    # the CLI hands the request to the running plane, which applies it on its next round
    wait_for(
        lambda: specops(plane.home, "history", "coder").stdout.count("rollout.rollback") == 2,
        timeout=60,
        interval=1.0,
        message="the plane's rollback in the history",
    )
    assert plane.state().phase is Phase.ROLLED_BACK
    assert plane.state().stable_version == plane.good
    down = specops(plane.home, "down")
    assert down.returncode == 0 and "control plane stopped" in down.stdout
    assert plane.process.process is not None and plane.process.process.wait(timeout=30) == 0
    again = specops(plane.home, "down")
    assert again.returncode == 1 and "no control plane runs" in again.stderr


def _serves(pid: int, version: str, role: str) -> bool:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
    return (
        b"--role" in command
        and command[command.index(b"--role") + 1] == role.encode()
        and (command[command.index(b"--pair-version") + 1] == version.encode())
    )
