"""The local body of the rollout brain: model-server processes, a weighted router, scraped metrics."""

from specops.local import backend, offline, router, scrape, servers, state_files

__all__ = ["backend", "offline", "router", "scrape", "servers", "state_files"]
