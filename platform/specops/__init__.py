"""SpecOps: deploy, watch and roll back speculative-decoding model pairs.

Packages, inward first: `rollout` (the pure rollout brain), `engine` (speculative decoding),
`pairs`, `registry`, `governance`, `telemetry`, `monitoring`, then the bodies that wire them: `serving`,
`local`, `cli`. Each package's ``__init__`` states its public surface in ``__all__``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
