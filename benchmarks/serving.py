"""Serving load benchmark: N concurrent streaming clients against `specops serve` with the demo pair.

    .venv/bin/python -m benchmarks.serving                       # 32 clients, 60 s per configuration
    .venv/bin/python -m benchmarks.serving --clients 8 --seconds 10 --out /tmp/serving-smoke.json

Two servers run the same pair on loopback ports: one with telemetry (Prometheus metrics, scraped
every second as the local rollout runtime does, and request records written to SQLite) and one
started with ``--no-telemetry``. Their measured phases alternate (``--rounds`` rounds, each one
phase per server, on/off then off/on; ``--seconds`` in total per server; the idle server sleeps on
its queue): these give the reported throughput and latencies. A shared machine drifts by more than
the 2 % budget from minute to minute, so the overhead is the median over rounds of each round's
on/off ratio (the two phases of a round are seconds apart). Also reported: the servers' own CPU
time per token (``server_cpu_s_per_token``, from /proc), and ``overhead_fraction_cpu_bound``, the
CPU time telemetry code takes per token measured in-process, times the measured token rate.
``--paired-seconds`` adds a run with both servers loaded at once, competing for the CPU.

In a phase every client sends streaming completions back to back until the
phase ends, then the in-flight requests finish; tokens/s = completion tokens / phase wall time.

TTFT is measured from sending the request to the first streamed text; ITL is the gap between
successive streamed chunks (as vLLM's benchmark_serving counts it: with speculation one chunk can
carry several tokens). Errors are non-200 answers, error events in a stream and transport failures.

Writes ``benchmarks/results/serving-cpu.json`` (``--out``) and prints a rich table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from specops.local.servers import free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PhaseResult:
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the server process's CPU time (all threads) during the phase

    def add(self, other: PhaseResult) -> None:
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.requests += other.requests
        self.errors += other.errors
        self.tokens += other.tokens
        self.ttft += other.ttft
        self.itl += other.itl
        self.error_samples += other.error_samples[:5]

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def start_server(
    pair: Path,
    *,
    port: int,
    telemetry: bool,
    database_url: str,
    max_batch: int,
    max_tokens: int,
    adaptive: bool,
    log: Path,
) -> tuple[subprocess.Popen, float]:
    command = [
        sys.executable,
        "-m",
        "specops.cli",
        "serve",
        "--pair",
        str(pair),
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
        "--max-tokens",
        str(max_tokens),
        "--telemetry" if telemetry else "--no-telemetry",
        "--adaptive" if adaptive else "--fixed-k",
    ]
    if telemetry and database_url:
        command += ["--database-url", database_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return process, started


def wait_ready(port: int, process: subprocess.Popen, started: float, timeout: float = 300.0) -> float:
    """Seconds from ``started`` (process launch) until the server answers readiness."""
    wait_until_ready(f"http://127.0.0.1:{port}", process, timeout_s=timeout, what=f"server on port {port}")
    return time.monotonic() - started


async def one_request(client: httpx.AsyncClient, prompt: str, *, max_tokens: int, result: PhaseResult) -> None:
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    last: float | None = None
    ttft: float | None = None
    gaps: list[float] = []
    tokens = 0
    try:
        async with client.stream("POST", "/openai/v1/completions", json=body) as response:
            if response.status_code != 200:
                result.errors += 1
                result.error_samples.append(f"{response.status_code} {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    result.errors += 1
                    result.error_samples.append(str(event["error"])[:200])
                    return
                now = time.perf_counter()
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
                if event.get("choices") and event["choices"][0].get("text"):
                    if ttft is None:
                        ttft = now - sent
                    else:
                        gaps.append(now - last)
                    last = now
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        result.errors += 1
        result.error_samples.append(repr(error)[:200])
        return
    result.requests += 1
    result.tokens += tokens
    if ttft is not None:
        result.ttft.append(ttft)
    result.itl += gaps


async def run_phase(
    port: int, prompts: list[str], *, clients: int, seconds: float, max_tokens: int, scrape: bool
) -> PhaseResult:
    result = PhaseResult()
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(index: int) -> None:
            n = index
            while time.perf_counter() < deadline:
                await one_request(client, prompts[n % len(prompts)], max_tokens=max_tokens, result=result)
                n += clients

        async def scraper() -> None:
            while time.perf_counter() < deadline:
                await client.get("/metrics")
                await asyncio.sleep(1.0)

        tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
        if scrape:
            tasks.append(asyncio.create_task(scraper()))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
    return result


async def run_paired(
    ports: dict[str, int], prompts: list[str], *, clients: int, seconds: float, max_tokens: int
) -> tuple[PhaseResult, PhaseResult]:
    """Both servers under the same load at the same time: whatever the machine does hits both alike,
    and they share its CPU, so telemetry's cost shows as the gap between their throughputs."""
    on, off = await asyncio.gather(
        run_phase(ports["on"], prompts, clients=clients, seconds=seconds, max_tokens=max_tokens, scrape=True),
        run_phase(ports["off"], prompts, clients=clients, seconds=seconds, max_tokens=max_tokens, scrape=False),
    )
    return on, off


def demo_pair_and_prompts(count: int, tokens: int) -> tuple[Path, list[str], str]:
    from specops.pairs import demo

    pairs = demo.train_demo_pairs(progress=True)
    return pairs.root, demo.demo_prompts(count, tokens), "demo pair (specops.pairs.demo, cached)"


def telemetry_cpu_cost(*, batch: int, max_tokens: int, tokens_per_step: float = 1.5) -> dict[str, float]:
    """CPU seconds telemetry spends per generated token, measured in-process (noise-free).

    Replays what the server does for ``batch`` requests of ``max_tokens`` tokens: one ``step`` per
    engine step, TTFT / ITL / e2e / per-request histograms, the request record (queued and written
    to SQLite by the writer thread, whose CPU time is counted too) and one ``/metrics`` render per
    second of the measured run.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from specops.telemetry import metrics, records

    def record(**values: object) -> records.RequestRecordData:
        """A request record like the ones serving writes (64 prompt tokens, `max_tokens` out)."""
        fields: dict = {
            "created_at": records.now(),
            "deployment": "d",
            "pair_name": "p",
            "pair_version": "1",
            "role": "stable",
            "prompt_tokens": 64,
            "output_tokens": max_tokens,
            "acceptance_rate": 0.25,
            "mean_accepted_length": 2.0,
            "ttft_s": 0.1,
            "e2e_s": 1.0,
            "itl_mean_s": 0.02,
            "finish_reason": "length",
            "prompt": "def f(x):\n    return x\n" * 8,
        }
        return records.RequestRecordData(**{**fields, **values})

    registry = CollectorRegistry()
    serving = metrics.ServingMetrics(model_name="bench", pair_version="1", role="stable", registry=registry)
    with tempfile.TemporaryDirectory() as folder:
        writer = records.RequestRecordWriter(f"sqlite:///{folder}/r.db", flush_seconds=0.05)
        writer.start()
        writer.offer(record(prompt="warm-up"))
        time.sleep(1.0)  # store opened and migrated before timing
        steps = max(1, round(max_tokens / tokens_per_step))
        rounds = 20
        started_cpu = time.process_time()
        for _ in range(rounds):
            for _ in range(steps):
                serving.step(
                    num_draft_tokens=[4] * batch,
                    num_accepted_tokens=[1] * batch,
                    num_emitted_tokens=[2] * batch,
                    running=[True] * batch,
                )
                serving.queue(running=batch, waiting=0)
                for _ in range(batch):
                    serving.inter_token(0.02, num_tokens=2)
            for _ in range(batch):
                serving.first_token(0.1)
                serving.finished(
                    finish_reason="length",
                    e2e_seconds=1.0,
                    num_drafts=steps,
                    acceptance_rate=0.25,
                    mean_accepted_length=2.0,
                    tokens_per_step=2.0,
                )
                if writer.sampled():
                    writer.offer(record())
        writer.close(timeout=60)
        request_cpu = time.process_time() - started_cpu
        started_cpu = time.process_time()
        for _ in range(20):
            generate_latest(registry)
        scrape_cpu = (time.process_time() - started_cpu) / 20
    tokens = rounds * batch * max_tokens
    return {"telemetry_cpu_s_per_token": request_cpu / tokens, "metrics_scrape_cpu_s": scrape_cpu}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs (shared), {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per configuration")
    parser.add_argument("--rounds", type=int, default=6, help="alternating phases per configuration")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="adaptive draft length (default: fixed k, so both servers do the same work)",
    )
    parser.add_argument(
        "--paired-seconds",
        type=float,
        default=0.0,
        help="seconds of a paired measurement (both servers loaded at once, competing for the CPU); 0 skips it",
    )
    parser.add_argument("--no-records", action="store_true", help="telemetry on means metrics only")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--pair", type=Path, default=None, help="pair folder (default: the demo pair)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serving-cpu.json")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.pair is None:
        pair, prompts, pair_label = demo_pair_and_prompts(256, args.prompt_tokens)
    else:
        from specops.pairs import demo

        pair, prompts, pair_label = args.pair, demo.demo_prompts(256, args.prompt_tokens), str(args.pair)

    workdir = Path(tempfile.mkdtemp(prefix="specops-serving-bench-"))
    database_url = f"sqlite:///{workdir / 'records.db'}"
    ports = {"on": free_port(), "off": free_port()}
    servers = {}
    for name, telemetry in (("on", True), ("off", False)):
        servers[name] = start_server(
            pair,
            port=ports[name],
            telemetry=telemetry,
            database_url="" if args.no_records else database_url,
            max_batch=args.max_batch,
            max_tokens=max(args.max_tokens, 16),
            adaptive=args.adaptive,
            log=workdir / f"server-{name}.log",
        )
    try:
        ready = {name: wait_ready(ports[name], *servers[name]) for name in servers}
        console.print(f"servers ready in {ready['on']:.1f} s / {ready['off']:.1f} s (started together)")
        for name in ("on", "off"):
            asyncio.run(
                run_phase(
                    ports[name],
                    prompts,
                    clients=args.clients,
                    seconds=args.warmup_seconds,
                    max_tokens=args.max_tokens,
                    scrape=False,
                )
            )
        totals = {"on": PhaseResult(), "off": PhaseResult()}
        phase_tok_s: dict[str, list[float]] = {"on": [], "off": []}
        phase_seconds = args.seconds / args.rounds
        for round_index in range(args.rounds):
            order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
            for name in order:
                cpu_before = server_cpu_seconds(servers[name][0].pid)
                phase = asyncio.run(
                    run_phase(
                        ports[name],
                        prompts,
                        clients=args.clients,
                        seconds=phase_seconds,
                        max_tokens=args.max_tokens,
                        scrape=name == "on",
                    )
                )
                phase.cpu_seconds = server_cpu_seconds(servers[name][0].pid) - cpu_before
                totals[name].add(phase)
                phase_tok_s[name].append(phase.tok_s)
                console.print(
                    f"round {round_index + 1} telemetry {name:>3}: {phase.tok_s:8.1f} tok/s "
                    f"{phase.req_s:6.2f} req/s errors {phase.errors}"
                )
        paired = {"on": PhaseResult(), "off": PhaseResult()}
        if args.paired_seconds > 0:
            paired["on"], paired["off"] = asyncio.run(
                run_paired(
                    ports, prompts, clients=args.clients, seconds=args.paired_seconds, max_tokens=args.max_tokens
                )
            )
            console.print(
                f"paired (both at once): telemetry on {paired['on'].tok_s:.1f} tok/s, "
                f"off {paired['off'].tok_s:.1f} tok/s, errors {paired['on'].errors + paired['off'].errors}"
            )
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    records_written = _count_records(workdir / "records.db")  # after SIGTERM flushed the writer
    on, off = totals["on"], totals["off"]
    # each round measures both configurations back to back, so a round's ratio is free of the slow
    # drift of a shared machine; the median over rounds is the overhead
    ratios = [a / b for a, b in zip(phase_tok_s["on"], phase_tok_s["off"], strict=True) if b]
    overhead = 1.0 - statistics.median(ratios) if ratios else float("nan")
    overhead_totals = 1.0 - on.tok_s / off.tok_s if off.tok_s else float("nan")
    cpu_per_token = {name: t.cpu_seconds / t.tokens if t.tokens else float("nan") for name, t in totals.items()}
    cost = telemetry_cpu_cost(batch=min(args.clients, args.max_batch), max_tokens=args.max_tokens)
    # CPU share telemetry takes at the measured rate: per-token work plus one /metrics render a second.
    cpu_bound = cost["telemetry_cpu_s_per_token"] * off.tok_s + cost["metrics_scrape_cpu_s"]
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "measured_seconds": round(on.seconds, 2),  # phases plus the drain of their in-flight requests
        "requests": on.requests,
        "errors": on.errors + off.errors + paired["on"].errors + paired["off"].errors,
        "tok_s": round(on.tok_s, 2),
        "req_s": round(on.req_s, 3),
        "ttft_p50_s": round(quantile(on.ttft, 0.5), 4),
        "ttft_p99_s": round(quantile(on.ttft, 0.99), 4),
        "itl_p50_s": round(quantile(on.itl, 0.5), 4),
        "itl_p99_s": round(quantile(on.itl, 0.99), 4),
        "tok_s_without_telemetry": round(off.tok_s, 2),
        "overhead_fraction": round(overhead, 4),
        "overhead_fraction_rounds": [round(1.0 - r, 4) for r in ratios],
        "overhead_fraction_totals": round(overhead_totals, 4),
        "server_cpu_s_per_token": {name: round(v, 7) for name, v in cpu_per_token.items()},
        "overhead_fraction_server_cpu": round(cpu_per_token["on"] / cpu_per_token["off"] - 1.0, 4),
        "telemetry_cpu_s_per_token": round(cost["telemetry_cpu_s_per_token"], 9),
        "metrics_scrape_cpu_s": round(cost["metrics_scrape_cpu_s"], 6),
        "overhead_fraction_cpu_bound": round(cpu_bound, 5),
        "paired_tok_s": round(paired["on"].tok_s, 2),
        "paired_tok_s_without_telemetry": round(paired["off"].tok_s, 2),
        "overhead_fraction_paired": (
            round(1.0 - paired["on"].tok_s / paired["off"].tok_s, 4) if paired["off"].tok_s else None
        ),
        "paired_errors": paired["on"].errors + paired["off"].errors,
        "phase_tok_s": {name: [round(v, 2) for v in values] for name, values in phase_tok_s.items()},
        "noise_fraction": round(_spread(phase_tok_s), 4),
        "requests_without_telemetry": off.requests,
        "errors_without_telemetry": off.errors,
        "records_written": records_written,
        "rounds": args.rounds,
        "max_tokens": args.max_tokens,
        "prompt_tokens_approx": args.prompt_tokens,
        "max_batch": args.max_batch,
        "adaptive_draft_length": args.adaptive,
        "ready_s": round(ready["on"], 2),
        "pair": pair_label,
        "machine": machine(),
        "python": platform.python_version(),
        "notes": "telemetry on = metrics scraped every 1 s + request records to SQLite; both servers on one "
        "machine, measured phases alternate (on/off, then off/on); overhead_fraction = 1 - median over rounds "
        "of the round's on/off tokens/s; greedy, ignore_eos, streaming",
        "error_samples": (on.error_samples + off.error_samples)[:5],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"specops serve, {args.clients} streaming clients, {pair_label}")
    table.add_column("telemetry")
    for column in ("seconds", "requests", "errors", "tok/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"):
        table.add_column(column, justify="right")
    for name, phase in (("on", on), ("off", off)):
        table.add_row(
            name,
            f"{phase.seconds:.1f}",
            str(phase.requests),
            str(phase.errors),
            f"{phase.tok_s:.1f}",
            f"{phase.req_s:.2f}",
            f"{quantile(phase.ttft, 0.5) * 1000:.0f} ms",
            f"{quantile(phase.ttft, 0.99) * 1000:.0f} ms",
            f"{quantile(phase.itl, 0.5) * 1000:.1f} ms",
            f"{quantile(phase.itl, 0.99) * 1000:.1f} ms",
        )
    console.print(table)
    console.print(
        f"telemetry CPU (in-process, noise-free): {cost['telemetry_cpu_s_per_token'] * 1e6:.1f} µs/token"
        f" + {cost['metrics_scrape_cpu_s'] * 1e3:.2f} ms per scrape -> at most {cpu_bound * 100:.2f} % "
        "of one core at this rate"
    )
    if result["overhead_fraction_paired"] is not None:
        console.print(f"telemetry overhead, paired: {result['overhead_fraction_paired'] * 100:.2f} % of tokens/s")
    console.print(
        f"telemetry overhead: {overhead * 100:.2f} % of tokens/s (phase-to-phase noise "
        f"{result['noise_fraction'] * 100:.1f} %); records written: {records_written}; "
        f"machine: {result['machine']}; wrote {args.out}"
    )


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spread(phase_tok_s: dict[str, list[float]]) -> float:
    """Largest relative gap between phases of the same configuration: the machine's noise."""
    gaps = [(max(v) - min(v)) / max(v) for v in phase_tok_s.values() if len(v) > 1 and max(v) > 0]
    return max(gaps, default=0.0)


def _count_records(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    try:
        return int(sqlite3.connect(path).execute("select count(*) from request_records").fetchone()[0])
    except sqlite3.Error:
        return 0


if __name__ == "__main__":
    main()
