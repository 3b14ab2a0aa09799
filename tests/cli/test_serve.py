"""`specops serve` as the rollout runs it: a subprocess on a loopback port, stopped by SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from specops.local.servers import free_port, wait_until_ready

pytestmark = pytest.mark.slow


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 120.0) -> float:
    return wait_until_ready(base_url, process, timeout_s=timeout, what="specops serve")


def test_serve_answers_counts_records_and_exits_cleanly_on_sigterm(tiny_pair: Path, tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "governance.db"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specops.cli",
            "serve",
            "--pair",
            str(tiny_pair),
            "--port",
            str(port),
            "--role",
            "canary",
            "--deployment",
            "chat",
            "--pair-version",
            "v9",
            "--max-tokens",
            "8",
        ],
        env={
            **__import__("os").environ,
            "SPECOPS_DATABASE_URL": f"sqlite:///{database}",
            "SPECOPS_RECORD_PROMPT": "hash",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        response = httpx.post(
            f"{base_url}/openai/v1/completions", json={"model": "chat", "prompt": "def", "max_tokens": 4}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert (
            httpx.post(
                f"{base_url}/openai/v1/completions", json={"prompt": "x", "max_tokens": 9}, timeout=60
            ).status_code
            == 400
        )
        metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
        assert (
            'specops_requests_total{finish_reason="length",model_name="tiny-pair",pair_version="v9",role="canary"} 1.0'
        ) in metrics
        assert 'reason="invalid_request",role="canary"} 1.0' in metrics
        assert "_created" not in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, process.stderr.read()[-2000:]
    rows = (
        sqlite3.connect(database)
        .execute(
            "select deployment, pair_name, pair_version, role, output_tokens, finish_reason, prompt "
            "from request_records"
        )
        .fetchall()
    )
    assert len(rows) == 1
    deployment, pair_name, version, role, output_tokens, finish, prompt = rows[0]
    assert (deployment, pair_name, version, role, output_tokens, finish) == (
        "chat",
        "tiny-pair",
        "v9",
        "canary",
        4,
        "length",
    )
    assert prompt.startswith("sha256:")


def test_serve_refuses_a_bad_role_in_one_line(tiny_pair: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "specops.cli", "serve", "--pair", str(tiny_pair), "--role", "blue"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "role must be stable or canary" in result.stderr


def test_serve_refuses_an_unknown_dtype_in_one_line(tiny_pair: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "specops.cli", "serve", "--pair", str(tiny_pair), "--dtype", "int3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "dtype must be one of auto, float32, bfloat16, float16, got 'int3'" in result.stderr


def test_auto_dtype_is_bfloat16_on_cuda_and_float32_elsewhere(tiny_pair: Path) -> None:
    from specops.serving.config import ServingConfig, torch_dtype

    assert torch_dtype(ServingConfig(pair=str(tiny_pair), device="cuda:0")) == "bfloat16"
    assert torch_dtype(ServingConfig(pair=str(tiny_pair))) == "float32"
    assert torch_dtype(ServingConfig(pair=str(tiny_pair), device="cuda", dtype="float32")) == "float32"


def test_serve_has_one_option_per_serving_config_field_with_help_and_env_var() -> None:
    import dataclasses

    import typer
    import typer.main

    from specops.cli import serve
    from specops.serving.config import ServingConfig

    app = typer.Typer(add_completion=False)
    serve.install(app)
    options = {param.name: param for param in typer.main.get_command(app).params}
    fields = [field.name for field in dataclasses.fields(ServingConfig)]
    assert sorted(options) == sorted(fields)
    assert {name: options[name].envvar for name in fields} == {name: f"SPECOPS_{name.upper()}" for name in fields}
    assert all(options[name].help for name in fields)
    assert options["pair"].required
    assert options["adaptive"].opts == ["--adaptive"] and options["adaptive"].secondary_opts == ["--fixed-k"]
    assert options["telemetry"].secondary_opts == ["--no-telemetry"]
    assert options["max_wait_ms"].opts == ["--max-wait-ms"] and options["max_wait_ms"].default == 10.0
