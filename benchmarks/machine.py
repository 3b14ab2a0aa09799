"""What a CPU benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform


def cpu_machine() -> dict[str, object]:
    """Processor, cores, Python and the load when the figures were taken."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
    }
