"""SpecOps: deploy, watch and roll back speculative-decoding model pairs."""

__version__ = "0.1.0"
