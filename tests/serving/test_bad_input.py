"""Bad input gets a 4xx JSON error saying what was wrong, is counted, and the server keeps serving."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.scrape import value

LABELS = {"model_name": "tiny-pair", "pair_version": "3", "role": "stable"}
COMPLETIONS = "/openai/v1/completions"
CHAT = "/openai/v1/chat/completions"

CASES = [
    (COMPLETIONS, b"{not json", 400, "invalid_request", "JSON"),
    (COMPLETIONS, b"[1, 2]", 400, "invalid_request", "valid dictionary"),
    (COMPLETIONS, {"max_tokens": 4}, 400, "invalid_request", "prompt"),
    (COMPLETIONS, {"prompt": 12}, 400, "invalid_request", "prompt"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": "4"}, 400, "invalid_request", "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 0}, 400, "invalid_request", "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": -3}, 400, "invalid_request", "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 25}, 400, "invalid_request", "max_tokens must be <= 24"),
    (COMPLETIONS, {"prompt": "x " * 80}, 400, "context_length", "maximum context length is 64"),
    (COMPLETIONS, {"prompt": "x", "temperature": -0.5}, 400, "invalid_request", "temperature"),
    (COMPLETIONS, {"prompt": "x", "top_p": 0}, 400, "invalid_request", "top_p"),
    (COMPLETIONS, {"prompt": "x", "top_p": 1.5}, 400, "invalid_request", "top_p"),
    (COMPLETIONS, {"prompt": "x", "stream": "yes"}, 400, "invalid_request", "stream"),
    (COMPLETIONS, {"prompt": "x", "model": "gpt-4"}, 404, "not_found", "gpt-4"),
    (COMPLETIONS, {"prompt": [999999]}, 400, "invalid_request", "vocabulary"),
    (COMPLETIONS, {"prompt": "x", "n": 3, "max_tokens": 2, "logprobs": 2}, 400, "invalid_request", "logprobs"),
    (COMPLETIONS, {"prompt": "x", "presence_penalty": 1.0}, 400, "invalid_request", "not supported"),
    (CHAT, {"messages": []}, 400, "invalid_request", "messages"),
    (CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_request", "role"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "invalid_request", "max_tokens"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "model": "nope"}, 404, "not_found", "nope"),
    ("/v1/models/tiny-pair:predict", {"instances": "def"}, 400, "invalid_request", "instances"),
    (
        "/v1/models/tiny-pair:predict",
        {"instances": [{"prompt": "x", "max_tokens": 0}]},
        400,
        "invalid_request",
        "max_tokens",
    ),
    ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "not_found", "nope"),
    (
        "/v2/models/tiny-pair/infer",
        {"inputs": [{"name": "text_input", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        400,
        "invalid_request",
        "BYTES",
    ),
    (
        "/v2/models/tiny-pair/infer",
        {
            "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
            "parameters": {"top_p": 7},
        },
        400,
        "invalid_request",
        "top_p",
    ),
]
IDS = [
    "malformed-json",
    "not-an-object",
    "missing-prompt",
    "prompt-wrong-type",
    "max-tokens-as-string",
    "max-tokens-zero",
    "max-tokens-negative",
    "max-tokens-above-limit",
    "prompt-beyond-context",
    "negative-temperature",
    "top-p-zero",
    "top-p-above-one",
    "stream-not-bool",
    "unknown-model",
    "token-id-outside-vocab",
    "logprobs-unsupported",
    "penalty-unsupported",
    "chat-no-messages",
    "chat-unknown-role",
    "chat-max-tokens-zero",
    "chat-unknown-model",
    "v1-instances-not-list",
    "v1-max-tokens-zero",
    "v1-unknown-model",
    "v2-wrong-datatype",
    "v2-top-p-out-of-range",
]


@pytest.mark.parametrize(("path", "body", "status", "reason", "says"), CASES, ids=IDS)
def test_bad_request_gets_a_4xx_json_error_and_is_counted(
    live, client: httpx.Client, path: str, body, status: int, reason: str, says: str
) -> None:
    before = live.metrics()
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert says.lower() in message.lower(), message
    after = live.metrics()
    counted = {
        r: value(after, "specops_request_errors_total", **LABELS, reason=r)
        - value(before, "specops_request_errors_total", **LABELS, reason=r)
        for r in ("invalid_request", "context_length", "not_found", "internal")
    }
    assert counted == {**dict.fromkeys(counted, 0.0), reason: 1.0}
    # ... and the server still serves.
    ok = client.post(COMPLETIONS, json={"prompt": "def", "max_tokens": 2})
    assert ok.status_code == 200


def test_a_client_that_disconnects_mid_stream_is_counted_and_the_server_keeps_serving(live) -> None:
    before = live.metrics()
    host, port = live.base_url.removeprefix("http://").split(":")
    body = b'{"prompt": "def", "max_tokens": 24, "ignore_eos": true, "stream": true}'
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /openai/v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert b"200 OK" in sock.recv(4096)  # headers (and maybe the first event), then hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = live.metrics()
        if value(after, "specops_request_errors_total", **LABELS, reason="client_disconnect") > value(
            before, "specops_request_errors_total", **LABELS, reason="client_disconnect"
        ):
            break
        time.sleep(0.1)
    else:
        pytest.fail("client_disconnect not counted")
    assert (
        value(after, "specops_requests_total", **LABELS, finish_reason="abort")
        == value(before, "specops_requests_total", **LABELS, finish_reason="abort") + 1
    )
    assert value(after, "specops_request_errors_total", **LABELS, reason="internal") == value(
        before, "specops_request_errors_total", **LABELS, reason="internal"
    )
    with live.client() as client:
        assert client.post(COMPLETIONS, json={"prompt": "def", "max_tokens": 2}).status_code == 200
