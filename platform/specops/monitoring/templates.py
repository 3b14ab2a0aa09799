"""Named PromQL templates, rendered strictly (Jinja2 ``StrictUndefined``): a missing variable is an error.

Why events-based error ratios and not averages of averages: an SLI over a window must weigh every event
once, so each ratio divides two ``rate()`` sums over the *same* window (including the 30-day period),
instead of averaging short-window ratios, which would give a quiet minute the weight of a busy one
(https://sre.google/workbook/implementing-slos/ and Sloth's notes on
https://sloth.dev/introduction/architecture/). ``x or y * 0`` fills a missing counter (no internal error
seen yet) with zero for the label sets that do have traffic; with no traffic at all a ratio is 0/0 = NaN
or absent, and a comparison with NaN is false, so alerts stay silent instead of firing on silence.

Why several windows and burn rates: a burn rate of N spends the whole budget in period/N; requiring
both a long window (significance) and a short one (still happening) gives fast detection and fast reset
(https://sre.google/workbook/alerting-on-slos/#6-multiwindow-multi-burn-rate-alerts).
"""

from __future__ import annotations

import jinja2

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)

TEMPLATES: dict[str, str] = {
    # bad = draft tokens the target rejected; all = draft tokens proposed.
    "sli_error_acceptance": """\
(
  sum by ({{ by }}) (rate({{ draft_tokens }}[{{ window }}]))
  -
  (
    sum by ({{ by }}) (rate({{ accepted_tokens }}[{{ window }}]))
    or
    sum by ({{ by }}) (rate({{ draft_tokens }}[{{ window }}])) * 0
  )
)
/
sum by ({{ by }}) (rate({{ draft_tokens }}[{{ window }}]))""",
    # bad = requests that ended in a server ("internal") error; all = finished requests + those errors
    # (client errors such as invalid_request are neither good nor bad: the telemetry module's definition).
    "sli_error_availability": """\
(
  sum by ({{ by }}) (rate({{ errors }}{reason="{{ server_reason }}"}[{{ window }}]))
  or
  sum by ({{ by }}) (rate({{ requests }}[{{ window }}])) * 0
)
/
(
  (
    sum by ({{ by }}) (rate({{ requests }}[{{ window }}]))
    or
    sum by ({{ by }}) (rate({{ errors }}{reason="{{ server_reason }}"}[{{ window }}])) * 0
  )
  +
  (
    sum by ({{ by }}) (rate({{ errors }}{reason="{{ server_reason }}"}[{{ window }}]))
    or
    sum by ({{ by }}) (rate({{ requests }}[{{ window }}])) * 0
  )
)""",
    # bad = requests whose mean inter-token latency exceeded the threshold bucket; all = every finished
    # request with at least two output tokens (specops_request_inter_token_latency_seconds observes each once).
    "sli_error_latency": """\
1 - (
  sum by ({{ by }}) (rate({{ histogram }}_bucket{le="{{ le }}"}[{{ window }}]))
  /
  sum by ({{ by }}) (rate({{ histogram }}_count[{{ window }}]))
)""",
    # bad = target steps (the one token of the target's own every step of a sequence yields); all = the
    # output tokens verification produced = target steps + accepted draft tokens. So the error ratio is
    # 1 / (tokens per target step): 1.0 exactly when speculation is off (accepted flat, or never exported:
    # the ``or`` fills it with 0 where target steps have traffic), 0/0 = NaN with no traffic at all.
    "sli_error_tokens_per_step": """\
sum by ({{ by }}) (rate({{ target_steps }}[{{ window }}]))
/
(
  sum by ({{ by }}) (rate({{ target_steps }}[{{ window }}]))
  +
  (
    sum by ({{ by }}) (rate({{ accepted_tokens }}[{{ window }}]))
    or
    sum by ({{ by }}) (rate({{ target_steps }}[{{ window }}])) * 0
  )
)""",
    "objective": "vector({{ value }})",
    "burn_rate": 'sum without ({{ window_label }}) ({{ record }}{ {{- slo_label }}="{{ slo }}"}) / {{ budget }}',
    "budget_remaining": '1 - {{ record }}{ {{- slo_label }}="{{ slo }}"}',
    "multi_burn_alert": """\
{% for condition in conditions %}
{% if not loop.first %}
or
{% endif %}
(
  max without ({{ window_label }}) ({{ condition.short_record }}{ {{- slo_label }}="{{ slo }}"}
    > ({{ condition.burn_rate }} * {{ budget }}))
  and
  max without ({{ window_label }}) ({{ condition.long_record }}{ {{- slo_label }}="{{ slo }}"}
    > ({{ condition.burn_rate }} * {{ budget }}))
)
{% endfor %}""",
    "drift_alert": "max by ({{ by }}) ({{ detected }}) > 0",
}


def render(name: str, **values: object) -> str:
    """Render template ``name``; raises ``jinja2.UndefinedError`` for a missing value."""
    return _ENV.from_string(TEMPLATES[name]).render(**values).strip()
