"""Where `specops serve --pair` finds its pair: a folder (named by pair.json) or an MLflow URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specops import errors
from specops.serving import config


def test_a_folder_is_named_by_its_pair_json(twin_pair: Path) -> None:
    pair = config.resolve_pair(str(twin_pair))
    assert (pair.name, pair.version) == ("twin-pair", "7")
    assert pair.target_dir == twin_pair / "target" and pair.draft_dir == twin_pair / "draft"


def test_the_pair_json_speculation_section_is_read(tmp_path: Path, tiny_pair: Path) -> None:
    folder = tmp_path / "spec-pair"
    (folder / "target").mkdir(parents=True)
    (folder / "target" / "config.json").write_text("{}")
    (folder / "pair.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "name": "coder",
                "target": {"uri": "x"},
                "speculation": {"proposer": "draft", "num_speculative_tokens": 6, "adaptive": False},
            }
        )
    )
    pair = config.resolve_pair(str(folder))
    assert (pair.name, pair.version) == ("coder", "local")
    assert pair.speculation == {"proposer": "draft", "num_speculative_tokens": 6, "adaptive": False}


def test_a_bare_folder_is_named_by_its_directory(tiny_pair: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "target").mkdir(parents=True)
    for item in (tiny_pair / "target").iterdir():
        (bare / "target" / item.name).symlink_to(item)
    pair = config.resolve_pair(str(bare))
    assert (pair.name, pair.version, pair.draft_dir) == ("bare", "local", None)


@pytest.mark.parametrize(
    "source",
    ["/nonexistent/pair", "models:/only-a-name", "models:/@alias"],
    ids=["missing-folder", "uri-without-version", "uri-without-name"],
)
def test_a_bad_pair_source_is_refused_in_one_line(source: str) -> None:
    with pytest.raises((errors.NotFound, errors.InvalidInput)):
        config.resolve_pair(source)


@pytest.mark.slow
def test_an_mlflow_uri_is_downloaded_through_the_registry(
    twin_pair: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPECOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SPECOPS_DATABASE_URL", raising=False)
    import shutil

    from specops import registry
    from specops.settings import Settings

    bare = tmp_path / "twin"  # a folder without our test pair.json: the registry writes the PairSpec
    shutil.copytree(twin_pair / "target", bare / "target")
    shutil.copytree(twin_pair / "draft", bare / "draft")
    reg = registry.PairRegistry.from_settings(Settings.from_env())
    version = reg.register("twin", bare, min_acceptance=0.0, max_new_tokens=8).version
    reg.set_alias("twin", "canary", version)

    by_version = config.resolve_pair(f"models:/twin/{version}")
    by_alias = config.resolve_pair("models:/twin@canary")
    assert (by_version.name, by_version.version) == ("twin", version)
    assert by_alias.path == by_version.path
    assert json.loads((by_version.path / "pair.json").read_text())["name"] == "twin"
    assert by_version.draft_dir is not None
    with pytest.raises(errors.NotFound):
        config.resolve_pair("models:/twin@production")
