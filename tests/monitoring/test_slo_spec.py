"""SLO specs are versioned and validated; every error names the SLO and the window it is about."""

from __future__ import annotations

import pytest

from specops.errors import InvalidInput
from specops.monitoring import rules, spec

VALID = """
version: specops/slo/v1
slos:
  - name: availability
    sli: {kind: availability}
    objective: 0.999
"""


def test_the_default_spec_is_valid_and_has_the_three_slos() -> None:
    parsed = spec.load_default()
    assert [slo.sli.kind for slo in parsed.slos] == ["acceptance", "availability", "latency"]
    assert all(slo.period == "30d" for slo in parsed.slos)


def test_default_windows_are_the_sre_workbook_ones() -> None:
    slo = spec.parse(VALID).slos[0]
    assert [(w.long, w.short, w.burn_rate) for w in slo.alerting.page] == [("1h", "5m", 14.4), ("6h", "30m", 6)]
    assert [(w.long, w.short, w.burn_rate) for w in slo.alerting.ticket] == [("1d", "2h", 3), ("3d", "6h", 1)]
    assert slo.error_budget == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: specops/slo/v2\nslos: []", "unknown SLO spec version 'specops/slo/v2'"),
        ("slos: []", "unknown SLO spec version None"),
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
        spec.parse(text, source="slo.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("slo.yaml: ")


def test_a_latency_threshold_is_written_as_prometheus_writes_bucket_bounds() -> None:
    parsed = spec.parse(VALID.replace("{kind: availability}", "{kind: latency, latency_threshold_s: 1}"))
    assert 'le="1.0"' in rules.sli_error_expr(parsed.slos[0], "5m")


def test_no_traffic_divides_zero_by_zero_so_alerts_stay_silent() -> None:
    # The acceptance error ratio divides by the draft-token rate itself: no drafts → NaN, never > threshold.
    expr = rules.sli_error_expr(spec.load_default().slos[0], "5m")
    assert expr.rstrip().endswith("(rate(specops_spec_decode_num_draft_tokens_total[5m]))")


def test_missing_template_values_are_errors() -> None:
    import jinja2

    from specops.monitoring import templates

    with pytest.raises(jinja2.UndefinedError):
        templates.render("objective")
