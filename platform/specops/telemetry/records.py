"""Sampled request records for drift monitoring, written off the request path.

The serving runtime hands each finished request to :meth:`RequestRecordWriter.offer`, which samples
it and puts it on a bounded queue without blocking. One writer thread takes records off the queue in
batches and inserts them with SQLAlchemy into the ``request_records`` table
(:class:`specops.governance.models.RequestRecord`). When the queue is full the record is dropped and
counted (``specops_request_records_dropped_total{reason="queue_full"}``); when the store fails the
batch is dropped and counted (``reason="store_error"``). Neither ever blocks or fails a request.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from specops import errors

log = logging.getLogger(__name__)

#: Column widths of the governance model (PostgreSQL enforces them).
_WIDTHS = {"deployment": 128, "pair_name": 128, "pair_version": 32, "role": 32, "finish_reason": 16}


@dataclass(frozen=True)
class RequestRecordData:
    """One request, as stored (the columns of ``request_records`` less ``id``)."""

    created_at: datetime
    deployment: str
    pair_name: str
    pair_version: str
    role: str
    prompt_tokens: int
    output_tokens: int
    acceptance_rate: float
    mean_accepted_length: float
    ttft_s: float
    e2e_s: float
    itl_mean_s: float
    finish_reason: str
    prompt: str

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        for column, width in _WIDTHS.items():
            values[column] = str(values[column])[:width]
        return values


@dataclass(frozen=True)
class PromptRedaction:
    """What of the prompt text a record keeps.

    mode: ``full`` (the text), ``none`` (empty string), ``hash`` (``sha256:<hex>``, lets the drift
        monitor count repeats without keeping text) or ``truncate`` (the first ``max_chars`` characters).
    Parsed from ``full | none | hash | truncate:N`` (flag ``--record-prompt``, env ``SPECOPS_RECORD_PROMPT``).
    """

    mode: str = "full"
    max_chars: int = 0

    @classmethod
    def parse(cls, text: str) -> PromptRedaction:
        value = text.strip().lower()
        if value in ("full", "none", "hash"):
            return cls(mode=value)
        if value.startswith("truncate:"):
            try:
                limit = int(value.split(":", 1)[1])
            except ValueError:
                limit = -1
            if limit >= 0:
                return cls(mode="truncate", max_chars=limit)
        raise errors.InvalidInput(f"prompt redaction must be full, none, hash or truncate:N, got {text!r}")

    def apply(self, prompt: str) -> str:
        if self.mode == "full":
            return prompt
        if self.mode == "none":
            return ""
        if self.mode == "hash":
            return "sha256:" + hashlib.sha256(prompt.encode("utf-8", "replace")).hexdigest()
        return prompt[: self.max_chars]


def _request_records_table():
    """The ``request_records`` table: the governance model's, or the contract's columns if absent."""
    try:
        from specops.governance.models import RequestRecord

        return RequestRecord.__table__
    except ImportError:  # pragma: no cover - the governance package ships with SpecOps
        import sqlalchemy as sa

        return sa.Table(
            "request_records",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("created_at", sa.DateTime, index=True),
            sa.Column("deployment", sa.String(128), index=True),
            sa.Column("pair_name", sa.String(128)),
            sa.Column("pair_version", sa.String(32)),
            sa.Column("role", sa.String(32)),
            sa.Column("prompt_tokens", sa.Integer),
            sa.Column("output_tokens", sa.Integer),
            sa.Column("acceptance_rate", sa.Float),
            sa.Column("mean_accepted_length", sa.Float),
            sa.Column("ttft_s", sa.Float),
            sa.Column("e2e_s", sa.Float),
            sa.Column("itl_mean_s", sa.Float),
            sa.Column("finish_reason", sa.String(16)),
            sa.Column("prompt", sa.Text),
        )


def _open_engine(url: str):
    """A SQLAlchemy engine on ``url`` whose ``request_records`` table exists (migrated if needed)."""
    import sqlalchemy as sa

    try:
        from specops.governance import store as governance_store
    except ImportError:  # pragma: no cover
        governance_store = None
    engine = sa.create_engine(url)
    if sa.inspect(engine).has_table("request_records"):
        return engine
    if governance_store is not None:
        engine.dispose()
        return governance_store.open_store(url).engine  # runs the Alembic migrations
    _request_records_table().create(engine, checkfirst=True)  # pragma: no cover
    return engine


class RequestRecordWriter:
    """Samples request records and writes them in batches from one background thread.

    url: SQLAlchemy URL of the telemetry store.
    sample_rate: share of requests recorded, 0..1 (default 1.0: every request).
    redaction: what of the prompt is kept.
    max_queue: records waiting at most; beyond it records are dropped (default 10 000, a few MB).
    batch_size: rows per INSERT transaction (default 256).
    flush_seconds: longest a record waits before its batch is written (default 1 s).
    on_written / on_dropped: callbacks counting rows written and dropped (``reason``, ``count``).
    """

    def __init__(
        self,
        url: str,
        *,
        sample_rate: float = 1.0,
        redaction: PromptRedaction | None = None,
        max_queue: int = 10_000,
        batch_size: int = 256,
        flush_seconds: float = 1.0,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise errors.InvalidInput(f"record sample rate must be in [0, 1], got {sample_rate}")
        self.url = url
        self.sample_rate = sample_rate
        self.redaction = redaction or PromptRedaction()
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._on_written = on_written or (lambda count: None)
        self._on_dropped = on_dropped or (lambda reason, count: None)
        self._queue: queue.Queue[RequestRecordData | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._random = random.Random()
        self.num_written = 0
        self.num_dropped = 0

    def start(self) -> None:
        """Start the writer thread (it opens, and if needed migrates, the store itself)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="specops-record-writer", daemon=True)
            self._thread.start()

    def sampled(self) -> bool:
        """Whether the next request should be recorded (decide before building the record)."""
        return self.sample_rate >= 1.0 or self._random.random() < self.sample_rate

    def offer(self, record: RequestRecordData) -> bool:
        """Queue ``record`` without blocking; False (and counted) when the writer is behind."""
        record = _redacted(record, self.redaction)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop("queue_full", 1)
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued (up to ``timeout`` seconds) and stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        thread.join(timeout)

    # -- writer thread -----------------------------------------------------------------------------

    def _drop(self, reason: str, count: int) -> None:
        self.num_dropped += count
        try:
            self._on_dropped(reason, count)
        except Exception:  # pragma: no cover - a metrics failure must not stop the writer
            log.exception("counting dropped records failed")

    def _run(self) -> None:
        engine = None
        table = _request_records_table()
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if not batch:
                continue
            try:
                if engine is None:
                    engine = _open_engine(self.url)
                with engine.begin() as connection:
                    connection.execute(table.insert(), [record.row() for record in batch])
            except Exception as error:
                log.warning("dropping %d request records: %s", len(batch), str(error).splitlines()[0])
                self._drop("store_error", len(batch))
                if engine is not None:
                    engine.dispose()
                    engine = None
                continue
            self.num_written += len(batch)
            self._on_written(len(batch))
        if engine is not None:
            engine.dispose()

    def _take_batch(self) -> tuple[list[RequestRecordData], bool]:
        """Up to ``batch_size`` records: wait for one, then let ``flush_seconds`` pass (or the batch
        fill) before taking what has queued, so the thread wakes about once per flush, not per record."""
        batch: list[RequestRecordData] = []
        first = self._queue.get()
        if first is None:
            return batch, True
        batch.append(first)
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, self.flush_seconds / 4))
                continue
            if record is None:
                return batch, True
            batch.append(record)
        return batch, False


def _redacted(record: RequestRecordData, redaction: PromptRedaction) -> RequestRecordData:
    if redaction.mode == "full":
        return record
    from dataclasses import replace

    return replace(record, prompt=redaction.apply(record.prompt))


def now() -> datetime:
    """The timezone-aware UTC timestamp records carry."""
    return datetime.now(UTC)
