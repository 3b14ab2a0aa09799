"""Every metric, rule, alert and label name the monitoring layer reads or writes, defined once.

Serving metric names are the contract of ``docs/CONTRACTS.md`` (``specops.telemetry.metrics``);
recording-rule names follow Prometheus's ``level:metric:operations`` convention
(https://prometheus.io/docs/practices/rules/#naming-and-aggregation).
"""

from __future__ import annotations

# --------------------------------------------------------------------------- serving metrics (contract)
DRAFTS = "specops_spec_decode_num_drafts_total"
DRAFT_TOKENS = "specops_spec_decode_num_draft_tokens_total"
ACCEPTED_TOKENS = "specops_spec_decode_num_accepted_tokens_total"
ACCEPTED_PER_POSITION = "specops_spec_decode_num_accepted_tokens_per_pos_total"
TARGET_STEPS = "specops_spec_decode_num_target_steps_total"
"""One count per running sequence per engine step, ``mode`` speculative (verified >= 1 draft token) or plain.
Unlike the draft counters it keeps counting when an engine stops drafting."""
PROMPT_TOKENS = "specops_prompt_tokens_total"
GENERATION_TOKENS = "specops_generation_tokens_total"
REQUESTS = "specops_requests_total"
REQUEST_ERRORS = "specops_request_errors_total"
TTFT = "specops_time_to_first_token_seconds"
ITL = "specops_inter_token_latency_seconds"
REQUEST_ITL = "specops_request_inter_token_latency_seconds"
"""Per-request mean inter-token latency: the latency SLI counts requests, not tokens."""
E2E_LATENCY = "specops_e2e_request_latency_seconds"
REQUEST_ACCEPTANCE = "specops_request_acceptance_rate"
REQUEST_MEAN_ACCEPTED_LENGTH = "specops_request_mean_accepted_length"
RUNNING = "specops_num_requests_running"
WAITING = "specops_num_requests_waiting"
DRAFT_LENGTH = "specops_draft_length"

STEP_MODE_SPECULATIVE = "speculative"
"""The ``mode`` of ``specops_spec_decode_num_target_steps_total`` whose steps verified draft tokens."""

SERVER_ERROR_REASON = "internal"
"""The only ``reason`` of ``specops_request_errors_total`` that counts against availability."""

# --------------------------------------------------------------------------- labels
LABEL_DEPLOYMENT = "deployment"
LABEL_MODEL = "model_name"
LABEL_VERSION = "pair_version"
LABEL_ROLE = "role"
LABEL_SEVERITY = "severity"
LABEL_SLO = "slo"
LABEL_SLO_WINDOW = "slo_window"
LABEL_COLUMN = "column"
LABEL_METHOD = "method"
LABEL_MODE = "mode"

SERIES_LABELS = (LABEL_DEPLOYMENT, LABEL_MODEL, LABEL_VERSION, LABEL_ROLE)
"""What every SLO series is aggregated by: one SLI per deployment, model, version and role.
A label the scrape does not carry (``deployment`` when Prometheus adds no target label) simply drops out."""

SEVERITY_PAGE = "page"
SEVERITY_TICKET = "ticket"

# --------------------------------------------------------------------------- recording rules
RECORD_SLI_ERROR = "slo:sli_error:ratio_rate{window}"
"""Bad events / all events over ``window`` (one rule name per window, like Sloth)."""
RECORD_OBJECTIVE = "slo:objective:ratio"
RECORD_ERROR_BUDGET = "slo:error_budget:ratio"
RECORD_CURRENT_BURN_RATE = "slo:current_burn_rate:ratio"
RECORD_PERIOD_BURN_RATE = "slo:period_burn_rate:ratio"
RECORD_BUDGET_REMAINING = "slo:period_error_budget_remaining:ratio"

# --------------------------------------------------------------------------- drift gauges and alert
DRIFT_SHARE = "specops_drift_share"
DRIFT_DETECTED = "specops_drift_detected"
DRIFT_COLUMN_DRIFTED = "specops_drift_column_drifted"
DRIFT_COLUMN_SCORE = "specops_drift_column_score"
DRIFT_LAST_RUN = "specops_drift_last_run_timestamp_seconds"
ALERT_DRIFT = "SpecOpsTrafficDrift"

# --------------------------------------------------------------------------- receiver
RECEIVER_NOTIFICATIONS = "specops_alert_receiver_notifications_total"
RECEIVER_UNAUTHORIZED = "specops_alert_receiver_unauthorized_total"
RECEIVER_ALERTS = "specops_alert_receiver_alerts_total"

# --------------------------------------------------------------------------- rule groups and objects
GROUP_SLI = "{service}-slo-sli-{slo}"
GROUP_META = "{service}-slo-meta-{slo}"
GROUP_ALERTS = "{service}-slo-alerts-{slo}"
GROUP_DRIFT = "{service}-drift"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1"
PROMETHEUS_RULE_KIND = "PrometheusRule"


def alert_name(slo: str) -> str:
    """``acceptance-rate`` → ``SpecOpsAcceptanceRateBudgetBurn`` (one name; severity tells page from ticket)."""
    return "SpecOps" + "".join(part.capitalize() for part in slo.replace("_", "-").split("-")) + "BudgetBurn"


def sli_error_record(window: str) -> str:
    """The recording rule name of the error ratio over ``window``."""
    return RECORD_SLI_ERROR.format(window=window)
