"""The controller applies the brain's decisions through the ports: traffic, aliases, audit, state."""

from __future__ import annotations

from typing import Any

import pytest

from specops.rollout import ManualAction, Phase, RolloutPolicy, RolloutState
from specops.rollout.controller import RolloutController
from tests.support.canary_windows import bad, good
from tests.support.in_memory_ports import Recorder


def _started(recorder: Recorder, policy: RolloutPolicy, **options: Any) -> RolloutController:
    """A controller over `recorder` (every port) with version 1 in production and 2 as the canary."""
    controller = recorder.controller(policy, **options)
    controller.begin("1", now=0.0)
    controller.begin("2", now=1.0)
    return controller


@pytest.fixture
def world(policy: RolloutPolicy) -> tuple[RolloutController, Recorder]:
    recorder = Recorder()
    return _started(recorder, policy), recorder


def test_a_rollout_starts_with_production_then_a_canary(world: tuple[RolloutController, Recorder]) -> None:
    _, recorder = world
    assert recorder.calls == ["deploy_stable 1", "start_canary 2 10"]
    assert recorder.aliases == {"production": "1", "canary": "2"}


def test_bad_canary_is_rolled_back_and_every_step_is_audited(world: tuple[RolloutController, Recorder]) -> None:
    controller, recorder = world
    recorder.canary_window = bad()
    controller.tick(now=2.0)
    controller.tick(now=3.0)
    assert recorder.calls[-1] == "remove_canary 1"
    assert recorder.aliases == {"production": "1"}
    assert controller.state().phase is Phase.ROLLED_BACK
    actions = [action for action, _ in recorder.events]
    assert actions[-4:] == ["rollout.hold", "alias.set", "rollout.rollback", "rollout.rolled_back"]
    assert actions.count("alias.set") == 3  # production, canary, production again on rollback


def test_good_canary_is_promoted_and_previous_remembered(world: tuple[RolloutController, Recorder]) -> None:
    controller, recorder = world
    recorder.canary_window = good()
    controller.tick(now=2.0)
    controller.tick(now=3.0)
    assert recorder.calls[-1] == "promote_canary"
    assert recorder.aliases == {"production": "2", "previous": "1"}


class Crash(RuntimeError):
    """The process dies while applying a decision."""


@pytest.mark.parametrize(
    ("call", "action", "applying", "settled"),
    [
        ("promote_canary", ManualAction.PROMOTE, Phase.PROMOTING, Phase.PROMOTED),
        ("remove_canary", ManualAction.ROLLBACK, Phase.ROLLING_BACK, Phase.ROLLED_BACK),
    ],
    ids=["promotion", "rollback"],
)
def test_a_crash_while_applying_leaves_the_decision_to_apply_again(
    world: tuple[RolloutController, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    call: str,
    action: ManualAction,
    applying: Phase,
    settled: Phase,
) -> None:
    controller, recorder = world
    real = getattr(recorder, call)

    def crash(*args: Any) -> None:
        raise Crash(call)

    monkeypatch.setattr(recorder, call, crash)
    with pytest.raises(Crash):
        controller.tick(now=2.0, action=action)
    assert controller.state().phase is applying  # saved before any of it was applied
    monkeypatch.setattr(recorder, call, real)
    recorder.canary_window = bad()  # a restarted process decides nothing new: it applies the same again
    controller.tick(now=3.0)
    state = controller.state()
    assert (state.phase, state.stable_version) == (settled, "2" if applying is Phase.PROMOTING else "1")
    assert recorder.calls[-1].startswith(call)
    expected = {"production": "2", "previous": "1"} if applying is Phase.PROMOTING else {"production": "1"}
    assert recorder.aliases == expected


def test_manual_actions_do_not_query_metrics(world: tuple[RolloutController, Recorder]) -> None:
    controller, recorder = world
    controller.tick(now=2.0, action=ManualAction.ROLLBACK)
    assert not any(call.startswith("window") for call in recorder.calls)
    assert controller.state().phase is Phase.ROLLED_BACK


def test_an_unapproved_promotion_is_held_and_audited(policy: RolloutPolicy) -> None:
    from specops.errors import Conflict

    recorder = Recorder(canary_window=good())
    approved: set[str] = {"1"}

    def approve(pair: str, version: str) -> None:
        if version not in approved:
            raise Conflict(f"{pair} version {version} needs an approval")

    controller = _started(recorder, policy, approve=approve)
    controller.tick(now=2.0)
    held = controller.tick(now=3.0)
    assert "needs an approval" in held.reason and controller.state().phase is Phase.PROGRESSING
    assert recorder.events[-1][0] == "rollout.promotion_held"
    approved.add("2")
    controller.tick(now=4.0)
    assert controller.state().stable_version == "2"


def test_the_analysis_window_covers_the_whole_step(canarying: RolloutState, policy: RolloutPolicy) -> None:
    from specops.rollout.controller import analysis_window_s

    started = canarying.history[-1].at
    assert analysis_window_s(canarying, policy, started + 1.0) == policy.analysis_interval_s
    assert analysis_window_s(canarying, policy, started + 500.0) == 500.0
