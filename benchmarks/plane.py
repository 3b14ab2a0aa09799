"""The embedded control plane on this machine: start to ready, deploy to serving, the router's added
latency, and client requests failed while a bad canary is rolled back.

One real `specops up` over a fresh state folder with the demo's two versions registered (v1 the good
pair, v2 its mismatched draft), the demo's short analysis windows, loopback only:

    PYTHONPATH=platform:operators:. python -m benchmarks.plane --out benchmarks/results/plane-cpu.json

The router's added latency compares the same requests (greedy, 8 tokens, the demo's prompts) sent to
the stable model server directly and through the router, taking turns, one at a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.harness import cpu_machine
from specops.local.state_files import FileStateStore
from specops.pairs import demo
from specops.rollout.model import Phase
from tests.support.control_plane import FAST_POLICY, PAIR, PlaneProcess, register_demo_versions, server_pids, specops


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``, in milliseconds."""
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def stable_port(plane_pid: int, version: str) -> int:
    """The loopback port of the stable model server the plane started for ``version``."""
    for pid in server_pids(plane_pid):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\x00")
        if command[command.index("--role") + 1] == "stable" and command[command.index("--pair-version") + 1] == version:
            return int(command[command.index("--port") + 1])
    raise SystemExit(f"no stable server of v{version} found")


def router_latency(router_url: str, direct_url: str, prompts: list[str], requests: int) -> dict[str, object]:
    """p50/p99 of the same requests, direct and routed, taking turns (ms)."""
    seconds: dict[str, list[float]] = {"direct": [], "routed": []}
    with httpx.Client(timeout=60) as client:
        for index, prompt in zip(range(2 * requests), itertools.cycle(prompts), strict=False):
            path = "routed" if index % 2 else "direct"
            url = f"{router_url}/completions" if path == "routed" else f"{direct_url}/openai/v1/completions"
            body = {"model": "coder", "prompt": prompt, "max_tokens": 8, "temperature": 0}
            started = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            seconds[path].append(time.perf_counter() - started)
    figures: dict[str, object] = {"requests_each": requests}
    for path, values in seconds.items():
        figures[f"{path}_p50_ms"] = percentile(values, 0.5)
        figures[f"{path}_p99_ms"] = percentile(values, 0.99)
    figures["added_p50_ms"] = round(figures["routed_p50_ms"] - figures["direct_p50_ms"], 2)  # type: ignore[operator]
    figures["added_p99_ms"] = round(figures["routed_p99_ms"] - figures["direct_p99_ms"], 2)  # type: ignore[operator]
    figures["added_mean_ms"] = round(
        1000 * (statistics.fmean(seconds["routed"]) - statistics.fmean(seconds["direct"])), 2
    )
    return figures


def canary_rollback(plane: PlaneProcess, home: Path, bad: str, prompts: list[str], clients: int) -> dict[str, object]:
    """Deploy the mismatched v2 as a canary under client traffic; count outcomes until it is rolled back."""
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    cycle = itertools.cycle(prompts)

    def client_loop() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                body = {"model": "coder", "prompt": next(cycle), "max_tokens": 32, "temperature": 0}
                try:
                    outcomes[
                        "ok" if client.post(f"{plane.base_url}/completions", json=body).is_success else "error"
                    ] += 1
                except httpx.HTTPError as error:
                    outcomes[type(error).__name__] += 1

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    policy = home.parent / "policy.yaml"
    policy.write_text(FAST_POLICY)
    started = time.monotonic()
    try:
        done = specops(home, "deploy", "coder", "--pair", PAIR, "--version", bad, "--policy", str(policy))
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        while FileStateStore(home).require("coder").phase is not Phase.ROLLED_BACK:
            if time.monotonic() - started > 300:
                raise SystemExit("the canary was not rolled back within 300 s")
            time.sleep(0.25)
        rolled_back_s = time.monotonic() - started
        time.sleep(2)  # requests after the rollback count too
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        "clients": clients,
        "deploy_to_rolled_back_s": round(rolled_back_s, 1),
        "requests": sum(outcomes.values()),
        "failed_requests": sum(n for outcome, n in outcomes.items() if outcome != "ok"),
        "outcomes": dict(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=100, help="requests each way for the router's latency")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients during the canary")
    args = parser.parse_args()
    console = Console()
    pairs = demo.train_demo_pairs(progress=False)
    prompts = demo.demo_prompts(32, 48)
    with tempfile.TemporaryDirectory(prefix="specops-plane-") as folder:
        home = Path(folder) / ".specops"
        good, bad = register_demo_versions(home, pairs)
        plane = PlaneProcess(home)
        started = time.monotonic()
        plane.start()
        ready_s = time.monotonic() - started
        try:
            started = time.monotonic()
            done = specops(home, "deploy", "coder", "--pair", PAIR, "--version", good)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            deploy_s = time.monotonic() - started
            assert plane.process is not None
            direct = f"http://127.0.0.1:{stable_port(plane.process.pid, good)}"
            latency = router_latency(plane.base_url, direct, prompts, args.requests)
            rollback = canary_rollback(plane, home, bad, prompts, args.clients)
        finally:
            plane.stop()
    report = {
        "machine": cpu_machine(),
        "up_to_ready_s": round(ready_s, 2),
        "first_deploy_to_serving_s": round(deploy_s, 2),
        "router": latency,
        "canary_rollback": rollback,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = Table("figure", "value", title="embedded control plane (this machine)")
    table.add_row("specops up → ready", f"{report['up_to_ready_s']} s")
    table.add_row("first deploy → serving", f"{report['first_deploy_to_serving_s']} s")
    table.add_row("direct p50 / p99", f"{latency['direct_p50_ms']} / {latency['direct_p99_ms']} ms")
    table.add_row("routed p50 / p99", f"{latency['routed_p50_ms']} / {latency['routed_p99_ms']} ms")
    table.add_row(
        "router adds (p50 / p99 / mean)",
        f"{latency['added_p50_ms']} / {latency['added_p99_ms']} / {latency['added_mean_ms']} ms",
    )
    table.add_row("canary deploy → rolled back", f"{rollback['deploy_to_rolled_back_s']} s")
    table.add_row("failed / all requests", f"{rollback['failed_requests']} / {rollback['requests']}")
    console.print(table)


if __name__ == "__main__":
    main()
