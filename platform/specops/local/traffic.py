"""Closed-loop client traffic for the local runtime: N clients sending completions through the router."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class TrafficTally:
    """What the clients saw, by the role that served each request (router header)."""

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    first_at: dict[str, float] = field(default_factory=dict)


class ClosedLoopTraffic:
    """``clients`` concurrent clients, each sending its next request when the last one finished."""

    def __init__(self, *, url: str, model: str, prompts: list[str], clients: int = 4, max_tokens: int = 48) -> None:
        if not prompts:
            raise ValueError("traffic needs at least one prompt")
        self.url, self.model, self.clients, self.max_tokens = url, model, clients, max_tokens
        self.tally = TrafficTally()
        self._prompts = itertools.cycle(prompts)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="specops-traffic", daemon=True)

    def start(self) -> ClosedLoopTraffic:
        """Start the clients in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the requests in flight."""
        self._stop.set()
        self._thread.join(timeout=60)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=120.0) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            with self._lock:
                prompt = next(self._prompts)
            body = {"model": self.model, "prompt": prompt, "max_tokens": self.max_tokens, "temperature": 0}
            try:
                response = await client.post("/openai/v1/completions", json=body)
            except httpx.HTTPError:
                with self._lock:
                    self.tally.failed["unreachable"] += 1
                await asyncio.sleep(0.2)
                continue
            role = response.headers.get("x-specops-role", "unknown")
            with self._lock:
                self.tally.first_at.setdefault(role, time.time())
                if response.status_code == 200:
                    self.tally.ok[role] += 1
                    self.tally.tokens[role] += int(response.json().get("usage", {}).get("completion_tokens", 0))
                else:
                    self.tally.failed[role] += 1
