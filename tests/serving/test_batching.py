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
    batcher = live.served.batcher
    batches, jobs = batcher.num_batches, batcher.num_batched_jobs
    statuses = asyncio.run(_fire(live.base_url, 20, stream=False))
    assert statuses == [200] * 20
    new_batches, new_jobs = batcher.num_batches - batches, batcher.num_batched_jobs - jobs
    assert new_jobs == 20
    assert new_batches < 20, "requests ran one by one"
    assert batcher.largest_batch <= batcher.max_batch == 8


def test_concurrent_streams_are_batched_too(live) -> None:
    batcher = live.served.batcher
    batches, jobs = batcher.num_batches, batcher.num_batched_jobs
    assert asyncio.run(_fire(live.base_url, 8, stream=True)) == [200] * 8
    assert batcher.num_batched_jobs - jobs == 8
    assert batcher.num_batches - batches < 8


def test_a_batch_whose_clients_all_left_ends_early(live) -> None:
    """Every streaming client hangs up: the engine call stops instead of generating for nobody."""
    import socket
    import time

    batcher = live.served.batcher
    aborted = batcher.num_aborted_batches
    host, port = live.base_url.removeprefix("http://").split(":")
    body = b'{"prompt": "def", "max_tokens": 24, "ignore_eos": true, "stream": true}'
    request = (
        b"POST /openai/v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    socks = [socket.create_connection((host, int(port))) for _ in range(3)]
    for sock in socks:
        sock.sendall(request)
    deadline = time.monotonic() + 30
    while batcher.num_running < 3 and time.monotonic() < deadline:  # the batch is in the engine...
        time.sleep(0.002)
    for sock in socks:  # ... when every client hangs up
        sock.close()
    while batcher.num_running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.num_running == 0
    assert batcher.num_aborted_batches == aborted + 1
    with httpx.Client(base_url=live.base_url, timeout=60) as client:
        assert client.post("/openai/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_a_request_arriving_mid_call_joins_the_running_engine_call(tiny_pair, tmp_path) -> None:
    """Continuous batching: a request arriving while a long sequence decodes takes a free row at the
    next step of the same engine call instead of waiting for the call to end."""
    from tests.support.live_servers import start_server

    server, (uv, thread) = start_server(tiny_pair, tmp=tmp_path, max_tokens=220, context_limit=256, max_batch=4)
    try:
        batcher = server.served.batcher
        long_body = {"prompt": "def", "max_tokens": 220, "ignore_eos": True, "stream": True}
        with (
            httpx.Client(base_url=server.base_url, timeout=60) as client,
            client.stream("POST", "/openai/v1/completions", json=long_body) as long,
        ):
            lines = long.iter_lines()
            next(line for line in lines if line.startswith("data:"))  # the long sequence is running
            calls, jobs = batcher.num_batches, batcher.num_batched_jobs
            short = client.post("/openai/v1/completions", json={"prompt": "x", "max_tokens": 2, "ignore_eos": True})
            assert short.status_code == 200, short.text
            assert short.json()["usage"]["completion_tokens"] == 2
            assert (batcher.num_batches, batcher.num_batched_jobs) == (calls, jobs + 1), "not admitted"
            streamed = [line for line in lines if line.startswith("data:")]
        assert streamed[-1] == "data: [DONE]"
    finally:
        uv.should_exit = True
        thread.join(10)
        if server.served.records is not None:
            server.served.records.close()
