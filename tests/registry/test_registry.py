"""Pair versions in MLflow: qualified before creation, tagged, aliased, downloadable, never partial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops.errors import Conflict, InvalidInput, NotFound, QualificationRefused, StoreUnavailable
from specops.governance import audit, models, store
from specops.registry import PairRegistry
from specops.settings import Settings
from tests.support.tiny_checkpoints import PROMPTS

FAST = {"prompts": PROMPTS[:2], "max_new_tokens": 6}

# MLflow 3.17 configures its ORM with a loader strategy SQLAlchemy 2.1 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One home for the module: creating an MLflow store costs seconds, so tests share it and use
    their own pair names where they need a clean slate."""
    home = tmp_path_factory.mktemp("registry-home")
    return Settings(
        home=home,
        database_url=f"sqlite:///{home / 'governance.db'}",
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifacts_dir=home / "artifacts",
    )


@pytest.fixture(scope="module")
def log(shared_settings: Settings) -> audit.AuditLog:
    return audit.AuditLog(store.open_store(shared_settings.database_url))


@pytest.fixture(scope="module")
def registry(shared_settings: Settings, log: audit.AuditLog) -> PairRegistry:
    return PairRegistry.from_settings(shared_settings, audit=log, actor="test")


@pytest.fixture(scope="module")
def registered(registry: PairRegistry, tiny_pairs):  # type: ignore[no-untyped-def]
    """tiny/1 (identical draft) and tiny/2 (unrelated draft, floor 0)."""
    fixed_k = {"speculation": {"adaptive": False}}  # exact figures: the governor may stop drafting on a CPU
    first = registry.register(
        "tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, config=fixed_k, note="good", **FAST
    )
    second = registry.register(
        "tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_random, min_acceptance=0.0, note="bad", **FAST
    )
    return first, second


@pytest.fixture
def clean_aliases(registry: PairRegistry, registered):  # type: ignore[no-untyped-def]
    yield
    for alias in ("production", "canary", "previous"):
        registry.delete_alias("tiny", alias)


def test_registering_makes_a_tagged_version_and_audits_it(registry, registered, log, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    first, second = registered
    assert (first.version, second.version) == ("1", "2")
    assert first.tags["qualification.acceptance_rate"] == "1.0000"
    assert first.tags["qualification.lossless"] == "true"
    assert first.tags["pair.target_sha256"] == first.tags["pair.draft_sha256"]
    assert second.tags["qualification.min_acceptance"] == "0"
    assert second.tags["note"] == "bad"
    assert float(second.tags["qualification.speedup_sampled"]) > 0
    assert second.tags["qualification.sampled_temperature"] == "0.7"
    assert second.tags["qualification.sampled_top_p"] == "0.95"
    assert second.tags["qualification.min_speedup"] == "0"  # default on a CPU: recorded, not judged
    assert second.tags["qualification.min_speedup_source"] == "default on cpu"
    listed = registry.versions("tiny")
    assert [item.version for item in listed] == ["2", "1"]
    assert listed[1].tags == first.tags
    events = [event for event in log.events("pair:tiny") if event.action == "version.register"]
    assert len(events) == 2
    assert json.loads(events[0].payload)["version"] == "1"
    with log.store.session() as session:
        rows = (
            session.query(models.PairVersion)
            .join(models.Pair)
            .filter(models.Pair.name == "tiny")
            .order_by(models.PairVersion.version)
            .all()
        )
        assert [(row.version, row.lossless) for row in rows] == [("1", True), ("2", True)]


def test_a_downloaded_version_is_a_pair_folder_with_a_speculators_block(registry, registered, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    folder = registry.download("tiny", "1")
    assert {path.name for path in folder.iterdir()} >= {"target", "draft", "pair.json", "qualification.json"}
    draft_config = json.loads((folder / "draft" / "config.json").read_text())
    block = draft_config["speculators_config"]
    assert block["algorithm"] == "specdec"
    assert block["proposal_methods"][0]["speculative_tokens"] == 4
    assert block["verifier"]["name_or_path"] == str(tiny_pairs.target)
    assert "speculators_config" not in json.loads((tiny_pairs.draft_copy / "config.json").read_text())
    spec = json.loads((folder / "pair.json").read_text())
    assert spec["name"] == "tiny"
    saved = json.loads((folder / "qualification.json").read_text())
    assert saved["passed"] is True
    assert saved["speedup_sampled"] > 0
    assert (saved["sampled_temperature"], saved["sampled_top_p"]) == (0.7, 0.95)
    assert registry.download("tiny", "1") == folder  # cached


def test_the_pyfunc_model_generates_like_the_target(registry, registered, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    from specops.engine import SamplingParams, SpeculationConfig, SpeculativeEngine

    model = registry.load("tiny", "1")
    prompts = ["def __init__(self, ", "import os\n"]
    completions = model.predict(prompts)
    assert len(completions) == 2
    assert all(isinstance(text, str) for text in completions)
    alone = SpeculativeEngine.load(tiny_pairs.target, config=SpeculationConfig(proposer="none"))
    tokenizer = alone.tokenizer
    expected = [
        tokenizer.decode(result.token_ids, skip_special_tokens=True)
        for result in alone.generate(
            [tokenizer(prompt)["input_ids"] for prompt in prompts], [SamplingParams(max_new_tokens=8)] * 2
        )
    ]
    assert model.unwrap_python_model().generate(prompts, max_new_tokens=8) == expected


def test_a_refused_pair_creates_nothing_and_is_audited(registry, log, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QualificationRefused, match="under the floor"):
        registry.register("refused", target=tiny_pairs.target, draft=tiny_pairs.draft_random, **FAST)
    with pytest.raises(NotFound):
        registry.versions("refused")
    (event,) = log.events("pair:refused")
    assert event.action == "version.refuse"
    assert "under the floor" in json.loads(event.payload)["reason"]


def test_a_pair_under_the_speedup_floor_is_refused_and_audited_like_one_under_the_acceptance_floor(  # type: ignore[no-untyped-def]
    registry, log, tiny_pairs
) -> None:
    with pytest.raises(QualificationRefused, match=r"speedup is under the floor 100×: greedy .*×, sampled .*×$"):
        registry.register(
            "slow",
            target=tiny_pairs.target,
            draft=tiny_pairs.draft_copy,
            config={"speculation": {"adaptive": False}},
            min_acceptance=0.0,
            min_speedup=100.0,
            **FAST,
        )
    with pytest.raises(NotFound):
        registry.versions("slow")
    (event,) = log.events("pair:slow")
    assert event.action == "version.refuse"
    payload = json.loads(event.payload)
    assert payload["reason"].startswith("speedup is under the floor 100×")
    assert payload["figures"]["min_speedup"] == 100.0
    assert payload["figures"]["speedup"] > 0
    assert payload["figures"]["speedup_sampled"] > 0


def test_a_speedup_floor_in_the_spec_is_applied(registry, log, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QualificationRefused, match="under the floor 100×"):
        registry.register(
            "slow-spec",
            target=tiny_pairs.target,
            draft=tiny_pairs.draft_copy,
            config={"speculation": {"adaptive": False}, "slos": {"min_acceptance_rate": 0.0, "min_speedup": 100}},
            **FAST,
        )
    (event,) = log.events("pair:slow-spec")
    assert event.action == "version.refuse"


def test_a_failure_while_logging_leaves_no_partial_version(registry, tiny_pairs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = registry.client

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        from mlflow.exceptions import MlflowException

        raise MlflowException("disk on fire")

    monkeypatch.setattr(client, "create_model_version", broken)
    experiment = client.get_experiment_by_name("specops-pairs")
    runs_before = {run.info.run_id for run in client.search_runs([experiment.experiment_id])}
    weights_before = set(registry.artifacts_dir.rglob("*.safetensors"))
    with pytest.raises(StoreUnavailable, match="disk on fire"):
        registry.register("broken", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, **FAST)
    with pytest.raises(NotFound):
        registry.versions("broken")
    assert {run.info.run_id for run in client.search_runs([experiment.experiment_id])} == runs_before
    assert set(registry.artifacts_dir.rglob("*.safetensors")) == weights_before


def test_aliases_move_and_read_back(registry, registered, clean_aliases) -> None:  # type: ignore[no-untyped-def]
    registry.set_alias("tiny", "production", "1")
    registry.set_alias("tiny", "canary", 2)
    assert registry.alias("tiny", "production") == "1"
    assert registry.aliases("tiny") == {"production": "1", "canary": "2"}
    assert [item.aliases for item in registry.versions("tiny")] == [["canary"], ["production"]]
    registry.set_alias("tiny", "production", "2")
    registry.delete_alias("tiny", "canary")
    registry.delete_alias("tiny", "canary")  # absent: no error
    assert registry.alias("tiny", "canary") is None
    assert registry.alias("tiny", "production") == "2"


def test_move_alias_writes_an_audit_event(registry, registered, log, clean_aliases) -> None:  # type: ignore[no-untyped-def]
    registry.move_alias("tiny", "production", "1", actor="alice", reason="first release")
    (event,) = log.events("tiny@production")
    assert event.action == "alias.set"
    assert json.loads(event.payload) == {
        "alias": "production",
        "pair": "tiny",
        "previous": None,
        "reason": "first release",
        "version": "1",
    }


@pytest.mark.parametrize(
    ("alias", "version", "error"),
    [("production", "9", NotFound), ("staging", "1", InvalidInput), ("production", "one", InvalidInput)],
    ids=["missing version", "unknown alias", "not a number"],
)
def test_bad_alias_moves_are_refused(registry, registered, alias: str, version: str, error: type) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        registry.set_alias("tiny", alias, version)


def test_an_alias_on_a_version_that_did_not_pass_is_refused(registry, registered) -> None:  # type: ignore[no-untyped-def]
    registry.client.set_model_version_tag("tiny", "2", "qualification.passed", "false")
    try:
        with pytest.raises(Conflict, match="did not pass"):
            registry.set_alias("tiny", "canary", "2")
    finally:
        registry.client.set_model_version_tag("tiny", "2", "qualification.passed", "true")


def test_unknown_pairs_and_versions_are_not_found(registry, registered) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        registry.versions("nope")
    with pytest.raises(NotFound):
        registry.version("tiny", "7")
    with pytest.raises(NotFound):
        registry.download("tiny", "7")


def test_an_artifact_folder_that_cannot_be_written_is_store_unavailable(tmp_path: Path, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_dir=blocker / "artifacts",
    )
    registry = PairRegistry.from_settings(settings)
    with pytest.raises(StoreUnavailable):
        registry.register("tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, **FAST)
    with pytest.raises(NotFound):
        registry.versions("tiny")


def test_missing_checkpoints_are_invalid_input_before_anything_runs(registry, tmp_path: Path, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="does not exist"):
        registry.register("tiny", target=tiny_pairs.target, draft=tmp_path / "nope", **FAST)
    with pytest.raises(InvalidInput, match="not valid"):
        registry.register("bad name", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, **FAST)


def test_an_unreachable_tracking_server_is_store_unavailable(tmp_path: Path, tiny_pairs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'g.db'}",
        tracking_uri="http://127.0.0.1:9",
        artifacts_dir=tmp_path / "artifacts",
    )
    registry = PairRegistry.from_settings(settings)
    with pytest.raises(StoreUnavailable):
        registry.register("tiny", target=tiny_pairs.target, draft=tiny_pairs.draft_copy, **FAST)
    with pytest.raises(StoreUnavailable):
        registry.versions("tiny")


def test_a_pair_folder_and_a_spec_register_with_measured_checksums(registry, registered, tiny_pairs) -> None:  # type: ignore[no-untyped-def]
    from specops.pairs import pair_spec

    folder = registry.download("tiny", "1")
    spec = pair_spec.PairSpec.from_file(folder / "pair.json")
    forged = spec.model_copy(
        update={
            "target": spec.target.model_copy(update={"sha256": "0" * 64, "licence": "MIT"}),
            "lineage": spec.lineage.model_copy(update={"parents": ["tiny/1"]}),
        }
    )
    version = registry.register("tiny-child", folder, forged, **FAST)
    assert version.tags["pair.target_sha256"] == pair_spec.weights_sha256(tiny_pairs.target)
    assert version.tags["pair.target_licence"] == "MIT"
    assert version.tags["pair.parents"] == "tiny/1"
