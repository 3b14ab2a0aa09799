"""The local body of the rollout brain: model-server processes, a weighted router, scraped metrics.

`wiring` assembles them around the rollout controller (`LocalDeployment`); `demo` and `traffic` drive
the local demo. Those three load on first use (they pull in the registry, governance and httpx).
"""

from specops.lazy_modules import lazy_submodules
from specops.local import backend, offline, router, scrape, servers, state_files

__all__ = ["backend", "demo", "offline", "router", "scrape", "servers", "state_files", "traffic", "wiring"]

__getattr__, __dir__ = lazy_submodules(__name__, ["demo", "traffic", "wiring"])
