"""Fuzz every route from the server's own OpenAPI description: bad input never yields a 5xx.

Schemathesis generates requests from ``/openapi.json`` (valid and invalid bodies, paths and
parameters) with Hypothesis; each operation gets ``MAX_EXAMPLES`` cases. (Its lazy pytest plugin
does not run under pytest 9, so the operations are driven here directly.)
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.scrape import value

LABELS = {"model_name": "tiny-pair", "pair_version": "3", "role": "stable"}
MAX_EXAMPLES = int(os.environ.get("SPECOPS_FUZZ_EXAMPLES", "40"))


def fuzz(operation, base_url: str, server_errors: list[str]) -> None:
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def call(case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        if response.status_code >= 500:
            server_errors.append(
                f"{operation.method.upper()} {operation.path}: {response.status_code} "
                f"{response.text[:200]} <- {case.body!r:.300}"
            )

    call()


def test_no_generated_request_gets_a_server_error(live) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/openai/v1/completions" for op in operations)
    for operation in operations:
        fuzz(operation, live.base_url, server_errors)
    assert not server_errors, "\n".join(server_errors[:10])
    assert value(live.metrics(), "specops_request_errors_total", **LABELS, reason="internal") == 0
