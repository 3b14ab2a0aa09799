"""Scraped counters become window increases per role and version, as PromQL's increase() would."""

from __future__ import annotations

import time

import pytest

from specops.local.scrape import ScrapeTarget, ScrapingMetricsSource, parse, quantile
from specops.rollout.model import Role
from tests.support.named_servers import NamedServer

LABELS = 'model_name="p",pair_version="2",role="canary"'


def exposition(
    drafts: int, draft_tokens: int, accepted: int, requests: int, internal_errors: int, plain_steps: int = 0
) -> str:
    return "\n".join(
        [
            f'specops_spec_decode_num_target_steps_total{{{LABELS},mode="speculative"}} {drafts}',
            f'specops_spec_decode_num_target_steps_total{{{LABELS},mode="plain"}} {plain_steps}',
            f'specops_request_tokens_per_step_bucket{{{LABELS},le="1.0"}} {requests // 2}',
            f'specops_request_tokens_per_step_bucket{{{LABELS},le="1.5"}} {requests}',
            f'specops_request_tokens_per_step_bucket{{{LABELS},le="+Inf"}} {requests}',
            f"specops_request_tokens_per_step_sum{{{LABELS}}} {requests * 1.2}",
            f"specops_request_tokens_per_step_count{{{LABELS}}} {requests}",
            f"specops_spec_decode_num_drafts_total{{{LABELS}}} {drafts}",
            f"specops_spec_decode_num_draft_tokens_total{{{LABELS}}} {draft_tokens}",
            f"specops_spec_decode_num_accepted_tokens_total{{{LABELS}}} {accepted}",
            f'specops_requests_total{{{LABELS},finish_reason="length"}} {requests}',
            f'specops_request_errors_total{{{LABELS},reason="internal"}} {internal_errors}',
            f'specops_request_errors_total{{{LABELS},reason="invalid_request"}} 99',
            'specops_spec_decode_num_drafts_total{model_name="p",pair_version="1",role="stable"} 1000',
            f'specops_inter_token_latency_seconds_bucket{{{LABELS},le="0.01"}} {requests * 5}',
            f'specops_inter_token_latency_seconds_bucket{{{LABELS},le="0.1"}} {requests * 10}',
            f'specops_inter_token_latency_seconds_bucket{{{LABELS},le="+Inf"}} {requests * 10}',
            "",
        ]
    )


def test_parse_keeps_only_the_asked_role_and_version_and_server_errors() -> None:
    totals, buckets, _ = parse(exposition(10, 40, 12, 5, 1), role="canary", version="2")
    assert totals["specops_spec_decode_num_drafts_total"] == 10
    assert totals["specops_request_errors_total"] == 1
    assert buckets[0.1] == 50


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.01), (0.75, 0.055), (1.0, 0.1)], ids=["p50", "p75", "p100"])
def test_quantile_interpolates_like_histogram_quantile(q: float, expected: float) -> None:
    assert quantile(q, {0.01: 5, 0.1: 10, float("inf"): 10}) == pytest.approx(expected)


def test_quantile_without_observations_is_none() -> None:
    assert quantile(0.95, {0.1: 0, float("inf"): 0}) is None


def test_window_is_the_increase_since_the_window_began(servers: tuple[NamedServer, NamedServer]) -> None:
    server, _ = servers
    target = ScrapeTarget(server.url, Role.CANARY, "2")
    source = ScrapingMetricsSource(lambda: [target])
    server.metrics_text = exposition(10, 40, 12, 5, 0)
    source.scrape_once()
    time.sleep(0.3)
    server.metrics_text = exposition(30, 120, 20, 9, 1, plain_steps=60)
    window = source.window(role=Role.CANARY, version="2", seconds=0.15)
    assert (window.num_drafts, window.num_draft_tokens, window.num_accepted_tokens) == (20, 80, 8)
    assert (window.num_requests, window.num_errors) == (4, 1)
    assert (window.num_target_steps, window.num_speculative_steps) == (80, 20)
    assert window.tokens_per_step == pytest.approx(1.1)
    assert window.acceptance_rate == pytest.approx(0.1)
    assert window.itl_p95_s is not None
    per_request = window.request_tokens_per_step
    assert per_request is not None and per_request.bounds == (1.0, 1.5)
    assert (per_request.cumulative, per_request.count) == ((2.0, 4.0), 4.0)
    assert per_request.mean == pytest.approx(1.2)
    assert window.request_itl is None  # that histogram was not exported


def test_a_server_born_inside_the_window_counts_from_zero(servers: tuple[NamedServer, NamedServer]) -> None:
    server, _ = servers
    server.metrics_text = exposition(10, 40, 12, 5, 0)
    source = ScrapingMetricsSource(lambda: [ScrapeTarget(server.url, Role.CANARY, "2")])
    window = source.window(role=Role.CANARY, version="2", seconds=60.0)
    assert window.num_draft_tokens == 40


def test_an_unknown_version_has_an_empty_window(servers: tuple[NamedServer, NamedServer]) -> None:
    server, _ = servers
    server.metrics_text = exposition(10, 40, 12, 5, 0)
    source = ScrapingMetricsSource(lambda: [ScrapeTarget(server.url, Role.CANARY, "2")])
    assert source.window(role=Role.CANARY, version="7", seconds=60.0).acceptance_rate is None
