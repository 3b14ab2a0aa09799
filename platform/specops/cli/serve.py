"""`specops serve`: one pair version in the KServe model server, until SIGTERM/SIGINT."""

from __future__ import annotations

import time

import typer


def install(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    pair: str = typer.Option(
        ..., "--pair", envvar="SPECOPS_PAIR", help="Pair folder, or models:/NAME/VERSION or models:/NAME@ALIAS."
    ),
    port: int = typer.Option(8080, "--port", envvar="SPECOPS_PORT", help="HTTP port (all interfaces)."),
    role: str = typer.Option("stable", "--role", envvar="SPECOPS_ROLE", help="stable or canary."),
    deployment: str = typer.Option(
        "",
        "--deployment",
        envvar="SPECOPS_DEPLOYMENT",
        help="Deployment name (records; also accepted as the model name).",
    ),
    pair_version: str = typer.Option(
        "",
        "--pair-version",
        envvar="SPECOPS_PAIR_VERSION",
        help="Version label (default: pair.json, the MLflow version, or 'local').",
    ),
    model_name: str = typer.Option(
        "", "--model-name", envvar="SPECOPS_MODEL_NAME", help="Model name clients use (default: the pair's name)."
    ),
    max_batch: int = typer.Option(
        16, "--max-batch", envvar="SPECOPS_MAX_BATCH", help="Most sequences per engine batch."
    ),
    max_wait_ms: float = typer.Option(
        10.0,
        "--max-wait-ms",
        envvar="SPECOPS_MAX_WAIT_MS",
        help="Longest the batcher holds a request for others to join.",
    ),
    max_tokens: int = typer.Option(
        512, "--max-tokens", envvar="SPECOPS_MAX_TOKENS", help="Largest max_tokens a request may ask for."
    ),
    context_limit: int = typer.Option(
        0,
        "--context-limit",
        envvar="SPECOPS_CONTEXT_LIMIT",
        help="Prompt + output tokens per request (0: the target's context).",
    ),
    database_url: str = typer.Option(
        "",
        "--database-url",
        envvar="SPECOPS_DATABASE_URL",
        help="SQLAlchemy URL for request records (empty: no records).",
    ),
    record_sample_rate: float = typer.Option(
        1.0, "--record-sample-rate", envvar="SPECOPS_RECORD_SAMPLE_RATE", help="Share of requests recorded, 0..1."
    ),
    record_prompt: str = typer.Option(
        "full",
        "--record-prompt",
        envvar="SPECOPS_RECORD_PROMPT",
        help="Prompt in records: full | none | hash | truncate:N.",
    ),
    num_speculative_tokens: int | None = typer.Option(
        None,
        "--num-speculative-tokens",
        envvar="SPECOPS_NUM_SPECULATIVE_TOKENS",
        help="Largest draft length k (default: pair.json's speculation, else 4).",
    ),
    adaptive: bool | None = typer.Option(
        None,
        "--adaptive/--fixed-k",
        envvar="SPECOPS_ADAPTIVE",
        help="Adapt k to acceptance and batch size, or keep it fixed (default: pair.json, else adaptive).",
    ),
    proposer: str | None = typer.Option(
        None,
        "--proposer",
        envvar="SPECOPS_PROPOSER",
        help="draft | prompt_lookup | none (default: pair.json, else draft).",
    ),
    device: str = typer.Option("cpu", "--device", envvar="SPECOPS_DEVICE", help="torch device."),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        envvar="SPECOPS_DTYPE",
        help="auto (bfloat16 on CUDA, else float32) | float32 | bfloat16 | float16.",
    ),
    telemetry: bool = typer.Option(
        True,
        "--telemetry/--no-telemetry",
        envvar="SPECOPS_TELEMETRY",
        help="Metrics and request records (off only to measure their cost).",
    ),
) -> None:
    """Serve a pair version: OpenAI-compatible /openai/v1, KServe v1/v2, /metrics, on one port."""
    started = time.perf_counter()
    from specops.serving import config as serving_config
    from specops.serving import server

    settings = serving_config.ServingConfig(
        pair=pair,
        port=port,
        role=role,
        deployment=deployment,
        model_name=model_name,
        pair_version=pair_version,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_tokens=max_tokens,
        context_limit=context_limit,
        database_url=database_url,
        record_sample_rate=record_sample_rate,
        record_prompt=record_prompt,
        telemetry=telemetry,
        num_speculative_tokens=num_speculative_tokens,
        adaptive=adaptive,
        proposer=proposer,
        device=device,
        dtype=dtype,
    )
    from specops.telemetry import records

    records.PromptRedaction.parse(record_prompt)  # refuse a bad value before loading anything
    server.serve(settings, started=started)
