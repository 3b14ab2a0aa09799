"""The metric definitions: contract names, labels, vLLM's counting, PromQL written beside them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from specops.telemetry import metrics
from tests.support.scrape import scrape, value

CONTRACT_NAMES = [
    "specops_spec_decode_num_drafts_total",
    "specops_spec_decode_num_draft_tokens_total",
    "specops_spec_decode_num_accepted_tokens_total",
    "specops_spec_decode_num_accepted_tokens_per_pos_total",
    "specops_spec_decode_num_target_steps_total",
    "specops_prompt_tokens_total",
    "specops_generation_tokens_total",
    "specops_requests_total",
    "specops_request_errors_total",
    "specops_time_to_first_token_seconds_bucket",
    "specops_inter_token_latency_seconds_bucket",
    "specops_e2e_request_latency_seconds_bucket",
    "specops_request_acceptance_rate_bucket",
    "specops_request_mean_accepted_length_bucket",
    "specops_request_tokens_per_step_bucket",
    "specops_num_requests_running",
    "specops_num_requests_waiting",
    "specops_draft_length",
]
LABELS = {"model_name": "m", "pair_version": "1", "role": "canary"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def serving(registry: CollectorRegistry) -> metrics.ServingMetrics:
    return metrics.ServingMetrics(**LABELS, registry=registry)


def read(registry: CollectorRegistry) -> dict:
    return scrape(generate_latest(registry).decode())


def test_every_contract_name_is_exported_with_the_three_labels(registry, serving) -> None:
    serving.step(num_draft_tokens=[2], num_accepted_tokens=[1], num_emitted_tokens=[2], running=[True])
    serving.first_token(0.1)
    serving.inter_token(0.1)
    serving.finished(
        finish_reason="stop",
        e2e_seconds=0.3,
        num_drafts=1,
        acceptance_rate=0.5,
        mean_accepted_length=2.0,
        tokens_per_step=1.5,
    )
    exported = read(registry)
    for name in CONTRACT_NAMES:
        keys = [dict(k[1:]) for k in exported if k[0] == name]
        assert keys, name
        assert all({"model_name", "pair_version", "role"} <= set(k) for k in keys), name


def test_a_step_counts_drafts_tokens_and_positions_like_vllm(registry, serving) -> None:
    # Three sequences: k=3 with 2 accepted, k=3 with 0 accepted, no draft (plain decoding); a finished row.
    serving.step(
        num_draft_tokens=[3, 3, 0, 0],
        num_accepted_tokens=[2, 0, 0, 0],
        num_emitted_tokens=[3, 1, 1, 0],
        running=[True, True, True, False],
    )
    got = read(registry)
    assert value(got, "specops_spec_decode_num_drafts_total") == 2
    assert value(got, "specops_spec_decode_num_draft_tokens_total") == 6
    assert value(got, "specops_spec_decode_num_accepted_tokens_total") == 2
    assert value(got, "specops_spec_decode_num_accepted_tokens_per_pos_total", position="0") == 1
    assert value(got, "specops_spec_decode_num_accepted_tokens_per_pos_total", position="1") == 1
    assert value(got, "specops_generation_tokens_total") == 5
    assert value(got, "specops_draft_length") == 3.0
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="speculative") == 2
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="plain") == 1


def test_target_steps_go_on_when_the_engine_stops_drafting(registry, serving) -> None:
    # Plain decoding only: draft counters stay at zero, target steps and tokens per step do not.
    for _ in range(5):
        serving.step(num_draft_tokens=[0, 0], num_accepted_tokens=[0, 0], num_emitted_tokens=[1, 1], running=[True] * 2)
    serving.finished(
        finish_reason="length",
        e2e_seconds=0.5,
        num_drafts=0,
        acceptance_rate=0.0,
        mean_accepted_length=1.0,
        tokens_per_step=1.0,
    )
    got = read(registry)
    assert value(got, "specops_spec_decode_num_draft_tokens_total") == 0
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="plain") == 10
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="speculative") == 0
    assert value(got, "specops_request_tokens_per_step_count") == 1
    assert value(got, "specops_request_tokens_per_step_bucket", le="1.0") == 1
    assert value(got, "specops_request_acceptance_rate_count") == 0


def test_request_totals_count_the_same_as_steps(registry, serving) -> None:
    serving.request_stats(
        num_drafts=2,
        num_draft_tokens=6,
        num_accepted_tokens=2,
        num_accepted_per_position=[1, 1, 0],
        num_generated_tokens=5,
        num_steps=3,
    )
    got = read(registry)
    assert value(got, "specops_spec_decode_num_drafts_total") == 2
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="speculative") == 2
    assert value(got, "specops_spec_decode_num_target_steps_total", mode="plain") == 1
    assert value(got, "specops_spec_decode_num_accepted_tokens_per_pos_total", position="1") == 1


def test_a_step_gap_is_spread_over_its_tokens(registry, serving) -> None:
    serving.inter_token(0.3, num_tokens=3)
    got = read(registry)
    assert value(got, "specops_inter_token_latency_seconds_count") == 3
    assert value(got, "specops_inter_token_latency_seconds_sum") == pytest.approx(0.3)


def test_aborted_requests_are_counted_without_latency(registry, serving) -> None:
    serving.finished(
        finish_reason="abort", e2e_seconds=1.0, num_drafts=0, acceptance_rate=0.0, mean_accepted_length=1.0
    )
    got = read(registry)
    assert value(got, "specops_requests_total", finish_reason="abort") == 1
    assert value(got, "specops_e2e_request_latency_seconds_count") == 0
    assert value(got, "specops_request_acceptance_rate_count") == 0


def test_disabled_metrics_count_nothing_but_dropped_records(registry) -> None:
    off = metrics.ServingMetrics(**LABELS, registry=registry, enabled=False)
    off.step(num_draft_tokens=[3], num_accepted_tokens=[3], num_emitted_tokens=[4], running=[True])
    off.error("internal")
    off.records_dropped("queue_full")
    got = read(registry)
    assert value(got, "specops_spec_decode_num_drafts_total") == 0
    assert value(got, "specops_request_errors_total") == 0
    assert value(got, "specops_request_records_dropped_total", reason="queue_full") == 1


def test_the_derived_promql_is_written_next_to_the_definitions() -> None:
    doc = metrics.__doc__
    assert (
        "rate(specops_spec_decode_num_accepted_tokens_total[5m]))\n      / sum by (role) (rate("
        "specops_spec_decode_num_draft_tokens_total[5m]))" in doc
    )
    assert (
        "1 + sum by (role) (rate(specops_spec_decode_num_accepted_tokens_total[5m]))\n      / sum by (role) "
        "(rate(specops_spec_decode_num_drafts_total[5m]))" in doc
    )
