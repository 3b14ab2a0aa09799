"""Governance: the SQL store (models + migrations), the hash-chained audit log, approvals.

Import modules, not names: ``governance.store.open_store(url)``, ``governance.audit.AuditLog(store)``,
``governance.approvals.require_approval(store, name, version)``.
"""

from specops.governance import approvals, audit, models, store

__all__ = ["approvals", "audit", "models", "store"]
