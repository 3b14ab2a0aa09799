"""Concurrent requests share engine batches (batch > 1 speculation), never above the maximum."""

from __future__ import annotations

import asyncio

import httpx


async def _fire(base_url: str, count: int, *, stream: bool) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        async def one(i: int) -> int:
            body = {"prompt": f"def f{i}(", "max_tokens": 6, "ignore_eos": True, "stream": stream}
            response = await client.post("/openai/v1/completions", json=body)
            return response.status_code

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_concurrent_requests_are_batched_up_to_the_maximum(live) -> None:
    batcher = live.runtime.batcher
    batches, jobs = batcher.num_batches, batcher.num_batched_jobs
    statuses = asyncio.run(_fire(live.base_url, 20, stream=False))
    assert statuses == [200] * 20
    new_batches, new_jobs = batcher.num_batches - batches, batcher.num_batched_jobs - jobs
    assert new_jobs == 20
    assert new_batches < 20, "requests ran one by one"
    assert batcher.largest_batch <= batcher.max_batch == 8


def test_concurrent_streams_are_batched_too(live) -> None:
    batcher = live.runtime.batcher
    batches, jobs = batcher.num_batches, batcher.num_batched_jobs
    assert asyncio.run(_fire(live.base_url, 8, stream=True)) == [200] * 8
    assert batcher.num_batched_jobs - jobs == 8
    assert batcher.num_batches - batches < 8
