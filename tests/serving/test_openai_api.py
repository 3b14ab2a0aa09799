"""The OpenAI-compatible API, KServe v1/v2 and health on one port, against the real engine."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.scrape import value

LABELS = {"model_name": "tiny-pair", "pair_version": "3", "role": "stable"}


def sse_events(response: httpx.Response) -> list[dict | str]:
    events: list[dict | str] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_completion_returns_text_usage_and_speculation(client: httpx.Client) -> None:
    response = client.post(
        "/openai/v1/completions", json={"model": "tiny-pair", "prompt": "def serve(", "max_tokens": 6, "temperature": 0}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert set(body["speculation"]) >= {"acceptance_rate", "mean_accepted_length", "num_drafts"}


def test_greedy_completion_is_deterministic(client: httpx.Client) -> None:
    request = {"prompt": "class Model:", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    first = client.post("/openai/v1/completions", json=request).json()
    second = client.post("/openai/v1/completions", json=request).json()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["usage"]["completion_tokens"] == 8


def test_token_id_prompts_and_several_prompts_give_one_choice_each(client: httpx.Client) -> None:
    response = client.post(
        "/openai/v1/completions", json={"prompt": ["def", "import os"], "max_tokens": 3, "n": 2, "seed": 5}
    )
    assert response.status_code == 200, response.text
    assert [c["index"] for c in response.json()["choices"]] == [0, 1, 2, 3]
    by_ids = client.post("/openai/v1/completions", json={"prompt": [5, 6, 7], "max_tokens": 2})
    assert by_ids.status_code == 200, by_ids.text


def test_streamed_completion_matches_the_unstreamed_one(client: httpx.Client) -> None:
    request = {"prompt": "import os\n", "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    whole = client.post("/openai/v1/completions", json=request).json()["choices"][0]["text"]
    with client.stream(
        "POST", "/openai/v1/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict) and e["choices"]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert events[-2]["usage"]["completion_tokens"] == 10


def test_chat_completion_and_its_stream(client: httpx.Client) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    response = client.post("/openai/v1/chat/completions", json={"messages": messages, "max_tokens": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    with client.stream(
        "POST", "/openai/v1/chat/completions", json={"messages": messages, "max_completion_tokens": 4, "stream": True}
    ) as stream:
        events = sse_events(stream)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert events[-1] == "[DONE]"


def test_models_lists_the_served_model(client: httpx.Client) -> None:
    body = client.get("/openai/v1/models").json()
    assert body["object"] == "list"
    assert body["data"][0]["id"] == "tiny-pair"


def test_kserve_v1_predict(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/tiny-pair:predict",
        json={
            "instances": ["def", {"prompt": "class", "max_tokens": 3}],
            "parameters": {"max_tokens": 2, "temperature": 0},
        },
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["completion_tokens"] <= n for p, n in zip(predictions, (2, 3), strict=True)] == [True, True]
    assert {"text", "finish_reason", "acceptance_rate", "mean_accepted_length"} <= set(predictions[0])


def test_kserve_v2_infer(client: httpx.Client) -> None:
    response = client.post(
        "/v2/models/tiny-pair/infer",
        json={
            "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["def", "import"]}],
            "parameters": {"max_tokens": 3, "temperature": 0},
        },
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["text_output"]["shape"] == [2]
    assert all(n <= 3 for n in outputs["completion_tokens"]["data"])


def test_health_follows_kserve(client: httpx.Client) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v1/models/tiny-pair").json() == {"name": "tiny-pair", "ready": True}
    assert client.get("/v2/models/tiny-pair/ready").status_code == 200


def test_metrics_count_tokens_requests_and_latencies(live, client: httpx.Client) -> None:
    before = live.metrics()
    response = client.post(
        "/openai/v1/completions", json={"prompt": "for line in", "max_tokens": 5, "ignore_eos": True, "temperature": 0}
    )
    usage = response.json()["usage"]
    after = live.metrics()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **LABELS, **labels) - value(before, name, **LABELS, **labels)

    assert delta("specops_prompt_tokens_total") == usage["prompt_tokens"]
    assert delta("specops_generation_tokens_total") == 5
    assert delta("specops_requests_total", finish_reason="length") == 1
    assert delta("specops_time_to_first_token_seconds_count") == 1
    assert delta("specops_e2e_request_latency_seconds_count") == 1
    assert delta("specops_inter_token_latency_seconds_count") == 4  # 5 tokens, 4 gaps
    assert value(after, "specops_num_requests_running", **LABELS) == 0


def test_every_contract_metric_is_exported_with_the_three_labels(live) -> None:
    names = {key[0] for key in live.metrics() if dict(key[1:]).get("role") == "stable"}
    for name in (
        "specops_spec_decode_num_drafts_total",
        "specops_spec_decode_num_draft_tokens_total",
        "specops_spec_decode_num_accepted_tokens_total",
        "specops_spec_decode_num_target_steps_total",
        "specops_prompt_tokens_total",
        "specops_generation_tokens_total",
        "specops_requests_total",
        "specops_request_errors_total",
        "specops_time_to_first_token_seconds_count",
        "specops_inter_token_latency_seconds_count",
        "specops_e2e_request_latency_seconds_count",
        "specops_request_acceptance_rate_count",
        "specops_request_mean_accepted_length_count",
        "specops_request_tokens_per_step_count",
        "specops_num_requests_running",
        "specops_num_requests_waiting",
        "specops_draft_length",
    ):
        assert name in names, name


def test_acceptance_metrics_follow_vllm_meaning(twin) -> None:
    """A draft identical to its target: every greedy draft token is accepted."""
    labels = {"model_name": "twin-pair", "pair_version": "7", "role": "canary"}
    before = twin.metrics()
    with twin.client() as client:
        body = client.post(
            "/openai/v1/completions",
            json={
                "model": "chat-prod",
                "prompt": "def serve(pair, port):",
                "max_tokens": 12,
                "temperature": 0,
                "ignore_eos": True,
            },
        ).json()
    after = twin.metrics()

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    drafts = delta("specops_spec_decode_num_drafts_total")
    draft_tokens = delta("specops_spec_decode_num_draft_tokens_total")
    accepted = delta("specops_spec_decode_num_accepted_tokens_total")
    assert drafts > 0 and accepted == draft_tokens
    assert delta("specops_spec_decode_num_accepted_tokens_per_pos_total", position="0") == drafts
    assert body["speculation"]["acceptance_rate"] == 1.0
    assert body["speculation"]["mean_accepted_length"] == 1 + accepted / drafts
    assert delta("specops_request_acceptance_rate_sum") == 1.0
    assert delta("specops_request_mean_accepted_length_sum") == body["speculation"]["mean_accepted_length"]
    steps = delta("specops_spec_decode_num_target_steps_total", mode="speculative") + delta(
        "specops_spec_decode_num_target_steps_total", mode="plain"
    )
    assert steps > 0 and delta("specops_request_tokens_per_step_sum") == pytest.approx(1 + accepted / steps)


def test_a_stop_string_ends_the_text_before_it(twin) -> None:
    request = {"prompt": "import os\n", "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    with twin.client() as client:
        full = client.post("/openai/v1/completions", json=request).json()["choices"][0]["text"]
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        assert stop, full
        cut = client.post("/openai/v1/completions", json={**request, "stop": [stop]}).json()["choices"][0]
        with client.stream(
            "POST", "/openai/v1/completions", json={**request, "stop": stop, "stream": True}
        ) as response:
            streamed = "".join(
                e["choices"][0]["text"] for e in sse_events(response) if isinstance(e, dict) and e["choices"]
            )
    assert cut["text"] == full[: full.index(stop)]
    assert cut["finish_reason"] == "stop"
    assert streamed == cut["text"]


def test_a_request_filling_the_whole_context_is_served(twin) -> None:
    served = twin.served
    limit = served.context_limit
    prompt = list(range(5, 5 + limit - 8))
    with twin.client() as client:
        response = client.post(
            "/openai/v1/completions", json={"prompt": prompt, "max_tokens": 8, "ignore_eos": True, "temperature": 0}
        )
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 8
        over = client.post("/openai/v1/completions", json={"prompt": prompt, "max_tokens": 9})
        assert over.status_code == 400
        assert over.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    "fields",
    [
        {"top_k": 2**70},
        {"top_k": -1},
        {"temperature": 1e-12},
        {"temperature": 2.0, "top_p": 1e-9},
        {"seed": -(2**63)},
        {"seed": 2**64 - 1},
        {"stop": ["", "\n"]},
    ],
    ids=["huge-top-k", "top-k-off", "tiny-temperature", "hot-narrow", "lowest-seed", "highest-seed", "empty-stop"],
)
def test_sampling_extremes_are_served(client: httpx.Client, fields: dict) -> None:
    response = client.post("/openai/v1/completions", json={"prompt": "def", "max_tokens": 3, **fields})
    assert response.status_code == 200, response.text
