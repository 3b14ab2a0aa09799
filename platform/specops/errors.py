"""Typed errors. The CLI maps them to one-line messages and exit codes; HTTP maps them to 4xx."""

from __future__ import annotations


class SpecOpsError(Exception):
    """Base of every error a user can cause; its message is one line that says what was wrong."""

    exit_code: int = 1


class InvalidInput(SpecOpsError):
    """A value given by the user (flag, file, request field) is not acceptable."""


class NotFound(SpecOpsError):
    """A named thing (pair, version, deployment, record) does not exist."""


class Conflict(SpecOpsError):
    """The request contradicts the current state (a second rollback while one runs, say)."""


class StoreUnavailable(SpecOpsError):
    """A database, registry or path cannot be reached or written."""


class QualificationRefused(SpecOpsError):
    """A pair version failed the qualification gate."""


class AuditChainBroken(SpecOpsError):
    """The audit log's hash chain does not verify."""
