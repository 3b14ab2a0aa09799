"""Request records: sampled, redacted, written in batches off the request path, dropped (and counted) when behind."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from specops import errors
from specops.telemetry import records


def record(prompt: str = "def serve(pair):", **overrides) -> records.RequestRecordData:
    fields = dict(
        created_at=records.now(),
        deployment="chat",
        pair_name="tiny",
        pair_version="3",
        role="canary",
        prompt_tokens=5,
        output_tokens=7,
        acceptance_rate=0.5,
        mean_accepted_length=2.0,
        ttft_s=0.01,
        e2e_s=0.1,
        itl_mean_s=0.015,
        finish_reason="length",
        prompt=prompt,
    )
    return records.RequestRecordData(**{**fields, **overrides})


class Counts:
    def __init__(self) -> None:
        self.written = 0
        self.dropped: dict[str, int] = {}

    def on_written(self, count: int) -> None:
        self.written += count

    def on_dropped(self, reason: str, count: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


def test_records_are_written_in_batches_to_the_governance_table(tmp_path: Path) -> None:
    counts = Counts()
    writer = records.RequestRecordWriter(
        f"sqlite:///{tmp_path / 'g.db'}",
        batch_size=50,
        flush_seconds=0.2,
        on_written=counts.on_written,
        on_dropped=counts.on_dropped,
    )
    writer.start()
    for i in range(120):
        assert writer.offer(record(output_tokens=i))
    writer.close(timeout=30)
    rows = (
        sqlite3.connect(tmp_path / "g.db")
        .execute("select deployment, role, output_tokens, prompt from request_records order by id")
        .fetchall()
    )
    assert [r[2] for r in rows] == list(range(120))
    assert rows[0][:2] == ("chat", "canary") and rows[0][3] == "def serve(pair):"
    assert counts.written == 120 and counts.dropped == {}


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    counts = Counts()
    writer = records.RequestRecordWriter("sqlite://", max_queue=2, on_dropped=counts.on_dropped)  # not started
    started = time.perf_counter()
    accepted = [writer.offer(record()) for _ in range(5)]
    assert time.perf_counter() - started < 0.1
    assert accepted == [True, True, False, False, False]
    assert counts.dropped == {"queue_full": 3}


def test_a_failing_store_drops_and_counts_the_batch(tmp_path: Path) -> None:
    counts = Counts()
    writer = records.RequestRecordWriter(
        f"sqlite:///{tmp_path / 'missing' / 'dir' / 'g.db'}", flush_seconds=0.05, on_dropped=counts.on_dropped
    )
    writer.start()
    writer.offer(record())
    writer.close(timeout=30)
    assert counts.dropped == {"store_error": 1}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("full", "secret prompt"),
        ("none", ""),
        ("truncate:6", "secret"),
        ("hash", "sha256:" + __import__("hashlib").sha256(b"secret prompt").hexdigest()),
    ],
    ids=["full", "none", "truncate", "hash"],
)
def test_prompt_redaction(mode: str, expected: str) -> None:
    assert records.PromptRedaction.parse(mode).apply("secret prompt") == expected


def test_an_unknown_redaction_is_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="full, none, hash or truncate:N"):
        records.PromptRedaction.parse("truncate:x")


def test_sampling_keeps_about_the_asked_share() -> None:
    writer = records.RequestRecordWriter("sqlite://", sample_rate=0.25)
    kept = sum(writer.sampled() for _ in range(4000))
    assert 800 < kept < 1200
    assert not any(records.RequestRecordWriter("sqlite://", sample_rate=0.0).sampled() for _ in range(100))
