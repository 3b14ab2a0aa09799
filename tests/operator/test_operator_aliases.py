"""The operator's alias adapter moves real MLflow aliases when the shared controller rolls back."""

from __future__ import annotations

from specops.registry import PairRegistry
from specops.rollout import Phase, RolloutPolicy
from specops.rollout.controller import RolloutController
from specops.settings import Settings
from specops_operator.registry import RegistryAliases
from tests.support.canary_windows import bad
from tests.support.in_memory_ports import Recorder
from tests.support.tiny_checkpoints import PROMPTS, TinyPairs


def test_a_rolled_back_canary_leaves_mlflow_production_on_the_stable_version(
    tiny_pairs: TinyPairs, settings: Settings
) -> None:
    registry = PairRegistry.from_settings(settings)
    common = {"prompts": PROMPTS, "max_new_tokens": 8}
    stable = registry.register("op-pair", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, **common)
    canary = registry.register(
        "op-pair", target=tiny_pairs.target, draft=tiny_pairs.draft_random, min_acceptance=0.0, **common
    )
    aliases = RegistryAliases(registry)
    recorder = Recorder(canary_window=bad())
    policy = RolloutPolicy(steps=(10, 100), min_draft_tokens=100, failure_limit=1)
    controller = RolloutController(
        deployment="op",
        pair="op-pair",
        policy=policy,
        serving=recorder,
        metrics=recorder,
        aliases=aliases,
        audit=recorder,
        states=recorder,
    )
    controller.begin(stable.version, now=0.0)
    controller.begin(canary.version, now=1.0)
    assert registry.aliases("op-pair") == {"production": stable.version, "canary": canary.version}
    assert aliases.resolve("op-pair", "canary") == canary.version

    controller.tick(now=2.0)

    assert controller.state().phase is Phase.ROLLED_BACK
    assert registry.aliases("op-pair") == {"production": stable.version}
    assert aliases.source("op-pair", stable.version).proposer == "draft"
