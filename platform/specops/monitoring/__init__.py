"""Monitoring that triggers action: SLO specs → Prometheus rules, Evidently drift, the Alertmanager
webhook receiver, and Grafana dashboards as code.

Layers (Sloth's): :mod:`slo_spec` parses and validates, :mod:`rules` generates plain rule groups,
:mod:`writer` writes files. :mod:`drift` compares request-record windows with Evidently
(:mod:`drift_windows` finds and loads them, :mod:`drift_gauges` publishes the verdict, :mod:`drift_run`
does all of it for one deployment), :mod:`receiver` turns Alertmanager notifications into incidents and
rollout observations, :mod:`dashboards` builds the Grafana dashboards. Heavy libraries (evidently,
fastapi, the Grafana SDK) are imported by those modules only, which load on first use, so importing this
package stays cheap.
"""

from specops.lazy_modules import lazy_submodules
from specops.monitoring import names, rules, slo_spec, templates, writer

__all__ = [
    "dashboards",
    "drift",
    "drift_gauges",
    "drift_run",
    "drift_windows",
    "names",
    "receiver",
    "rules",
    "slo_spec",
    "templates",
    "writer",
]

__getattr__, __dir__ = lazy_submodules(
    __name__, ["dashboards", "drift", "drift_gauges", "drift_run", "drift_windows", "receiver"]
)
