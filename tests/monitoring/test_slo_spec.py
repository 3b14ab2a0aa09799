"""SLO specs are versioned and validated; every error names the SLO and the window it is about."""

from __future__ import annotations

import typing

import pytest

from specops.errors import InvalidInput
from specops.monitoring import rules, slo_spec

VALID = """
version: specops/slo/v1
slos:
  - name: availability
    sli: {kind: availability}
    objective: 0.999
"""


def test_the_default_spec_is_valid_and_has_the_three_slos() -> None:
    parsed = slo_spec.load_default()
    assert parsed.version == slo_spec.SPEC_VERSION == "specops/slo/v2"
    assert [slo.sli.kind for slo in parsed.slos] == ["acceptance", "tokens_per_step", "availability", "latency"]
    assert all(slo.period == "30d" for slo in parsed.slos)


def test_default_windows_are_the_sre_workbook_ones() -> None:
    slo = slo_spec.parse(VALID).slos[0]
    assert [(w.long, w.short, w.burn_rate) for w in slo.alerting.page] == [("1h", "5m", 14.4), ("6h", "30m", 6)]
    assert [(w.long, w.short, w.burn_rate) for w in slo.alerting.ticket] == [("1d", "2h", 3), ("3d", "6h", 1)]
    assert slo.error_budget == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: specops/slo/v3\nslos: []",
            "unknown SLO spec version 'specops/slo/v3'; this SpecOps reads specops/slo/v1 and specops/slo/v2",
        ),
        ("slos: []", "unknown SLO spec version None"),
        ("version: [specops/slo/v1]\nslos: []", "unknown SLO spec version ['specops/slo/v1']"),
        ("- a list", "is a mapping"),
        ("version: specops/slo/v1\nslos: []", "the spec defines no SLOs"),
        (VALID.replace("0.999", "1.5"), "SLO 'availability': objective"),
        (VALID.replace("{kind: availability}", "{kind: latency}"), "SLO 'availability': sli: a latency SLI needs"),
        (VALID + "    period: 30 days\n", "SLO 'availability': period: not a duration"),
        (VALID + "    colour: red\n", "SLO 'availability': colour: Extra inputs are not permitted"),
        (
            VALID.replace("0.999", "0.5"),
            "SLO 'availability': page window 1h/5m: burn rate 14.4 × error budget 0.5 = 7.2 ≥ 1",
        ),
        (
            VALID + "    alerting: {page: [{long: 5m, short: 1h, burn_rate: 2}]}\n",
            "SLO 'availability': alerting.page.0: short window 1h must be shorter than long window 5m",
        ),
        (
            VALID + "  - name: availability\n    sli: {kind: availability}\n    objective: 0.99\n",
            "SLO names must be unique, repeated: availability",
        ),
        (VALID.replace("name: availability", "name: Availability"), "must be lower-case"),
    ],
    ids=[
        "unknown-version",
        "no-version",
        "version-not-a-string",
        "not-a-mapping",
        "no-slos",
        "objective-above-one",
        "latency-without-threshold",
        "bad-duration",
        "unknown-field",
        "burn-rate-that-cannot-fire",
        "short-longer-than-long",
        "duplicate-names",
        "bad-name",
    ],
)
def test_bad_specs_are_refused_with_a_message_that_says_where(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        slo_spec.parse(text, source="slo.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("slo.yaml: ")


TOKENS_PER_STEP = """
version: specops/slo/v2
slos:
  - name: tokens-per-step
    sli: {kind: tokens_per_step}
    objective: 0.2
    alerting:
      page: [{long: 1h, short: 5m, burn_rate: 1.2}]
      ticket: []
"""


@pytest.mark.parametrize(
    "kind",
    ["{kind: acceptance}", "{kind: availability}", "{kind: latency, latency_threshold_s: 0.1}"],
    ids=["acceptance", "availability", "latency"],
)
def test_a_v1_spec_is_still_read(kind: str) -> None:
    parsed = slo_spec.parse(VALID.replace("{kind: availability}", kind).replace("0.999", "0.99"))
    assert parsed.version == "specops/slo/v1"
    assert rules.generate(parsed)


def test_a_v1_spec_with_the_tokens_per_step_kind_is_refused_naming_v2() -> None:
    with pytest.raises(InvalidInput) as raised:
        slo_spec.parse(TOKENS_PER_STEP.replace("specops/slo/v2", "specops/slo/v1"), source="slo.yaml")
    assert str(raised.value) == (
        "slo.yaml: SLO 'tokens-per-step': SLI kind tokens_per_step needs version specops/slo/v2; "
        "this spec says specops/slo/v1"
    )
    assert "\n" not in str(raised.value)


def test_a_v2_spec_reads_every_kind() -> None:
    parsed = slo_spec.parse(TOKENS_PER_STEP + VALID.split("slos:\n")[1])
    assert parsed.version == "specops/slo/v2"
    assert [slo.sli.kind for slo in parsed.slos] == ["tokens_per_step", "availability"]
    assert set(slo_spec.SLI_KINDS_BY_VERSION["specops/slo/v2"]) == set(slo_spec.SLIKind)
    assert typing.get_args(slo_spec.SLOSpec.model_fields["version"].annotation) == tuple(slo_spec.SLI_KINDS_BY_VERSION)


def test_tokens_per_step_objective_is_one_minus_one_over_tokens_per_step() -> None:
    slo = slo_spec.parse(TOKENS_PER_STEP).slos[0]
    # error ratio = 1 / tokens per step, so the objective 0.2 holds while tokens per step >= 1.25.
    assert 1 / (1 - slo.objective) == pytest.approx(1.25)
    assert slo.error_budget == pytest.approx(0.8)


def test_tokens_per_step_refuses_the_standard_burn_rates_it_cannot_reach() -> None:
    # Speculation off is the worst case (error ratio 1): burn 1 / 0.8 = 1.25 at most, so 14.4x never fires.
    with pytest.raises(InvalidInput) as raised:
        slo_spec.parse(TOKENS_PER_STEP.split("    alerting:")[0])
    assert "SLO 'tokens-per-step': page window 1h/5m: burn rate 14.4 × error budget 0.8 = 11.52 ≥ 1" in str(
        raised.value
    )
    assert "lower the burn rate below 1.25" in str(raised.value)


def test_tokens_per_step_takes_no_latency_threshold() -> None:
    with pytest.raises(InvalidInput, match="latency_threshold_s only applies to latency SLIs, not tokens_per_step"):
        slo_spec.parse(
            TOKENS_PER_STEP.replace("{kind: tokens_per_step}", "{kind: tokens_per_step, latency_threshold_s: 1}")
        )


def test_tokens_per_step_has_data_with_speculation_off_and_none_without_traffic() -> None:
    # Error = target steps / (target steps + accepted), accepted filled with 0 where steps have traffic:
    # a canary that never drafted still gets 1.0; no steps at all divides 0 by 0 (or nothing), silent.
    expr = rules.sli_error_expr(slo_spec.parse(TOKENS_PER_STEP).slos[0], "5m")
    steps = "(rate(specops_spec_decode_num_target_steps_total[5m]))"
    assert expr.startswith(f"sum by (deployment, model_name, pair_version, role) {steps}\n/")
    assert f"or\n    sum by (deployment, model_name, pair_version, role) {steps} * 0" in expr
    assert "draft_tokens" not in expr


def test_a_latency_threshold_is_written_as_prometheus_writes_bucket_bounds() -> None:
    parsed = slo_spec.parse(VALID.replace("{kind: availability}", "{kind: latency, latency_threshold_s: 1}"))
    assert 'le="1.0"' in rules.sli_error_expr(parsed.slos[0], "5m")


def test_no_traffic_divides_zero_by_zero_so_alerts_stay_silent() -> None:
    # The acceptance error ratio divides by the draft-token rate itself: no drafts → NaN, never > threshold.
    expr = rules.sli_error_expr(slo_spec.load_default().slos[0], "5m")
    assert expr.rstrip().endswith("(rate(specops_spec_decode_num_draft_tokens_total[5m]))")


def test_missing_template_values_are_errors() -> None:
    import jinja2

    from specops.monitoring import templates

    with pytest.raises(jinja2.UndefinedError):
        templates.render("objective")
