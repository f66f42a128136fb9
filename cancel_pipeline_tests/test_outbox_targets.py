"""Target configuration (the targets file and the demo switch) and how the client reads a target's answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cancel_pipeline.outbox.client import CancelOrderClient
from cancel_pipeline.outbox.targets import (
    DEMO_TARGET_NAME,
    MissingToken,
    TargetsError,
    enabled_targets,
    load_targets,
    resolve_token,
)


def _write(tmp_path: Path, targets: dict) -> dict[str, str]:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": targets}))
    return {"CANCEL_PIPELINE_TARGETS": str(path)}


def test_targets_file_and_demo_switch(tmp_path: Path) -> None:
    env = _write(
        tmp_path,
        {
            "oms": {"base_url": "https://oms.example.com/api/", "token_env": "OMS_TOKEN", "tags": ["vip"]},
            "hub": {"base_url": "http://127.0.0.1:9", "token_env": "HUB_TOKEN", "enabled": False},
        },
    )
    env["CANCEL_PIPELINE_DEMO_TARGET"] = "1"
    targets = {target.name: target for target in load_targets(env)}
    assert set(targets) == {"oms", "hub", DEMO_TARGET_NAME}
    assert targets["oms"].base_url == "https://oms.example.com/api" and targets["oms"].orders.tags == ("vip",)
    assert [target.name for target in enabled_targets(env)] == ["oms", DEMO_TARGET_NAME]
    assert targets[DEMO_TARGET_NAME].is_demo
    assert resolve_token(targets["oms"], {"OMS_TOKEN": "s3cret"}) == "s3cret"
    with pytest.raises(MissingToken, match="OMS_TOKEN"):
        resolve_token(targets["oms"], {})
    assert load_targets({}) == []


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"base_url": "oms.example.com", "token_env": "T"}, "base_url"),
        ({"base_url": "https://x", "token": "abc"}, "unknown keys"),
        ({"base_url": "https://x", "token_env": "not a name"}, "token_env"),
        ({"base_url": "https://x", "token_env": "T", "max_attempts": 0}, "max_attempts"),
        ({"base_url": "https://x", "token_env": "T", "tags": "vip"}, "tags"),
    ],
)
def test_invalid_entries_fail_naming_the_target_and_key(tmp_path: Path, entry: dict, complaint: str) -> None:
    with pytest.raises(TargetsError, match=complaint) as raised:
        load_targets(_write(tmp_path, {"oms": entry}))
    assert "'oms'" in str(raised.value)


def _answer(status: int, body: object) -> object:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Auth-Token"] == "t0ken"
        assert request.url.path == "/api/orders/42/cancel"
        assert json.loads(request.content) == {"reason": "fraud"}
        return httpx.Response(status, json=body)

    with CancelOrderClient("http://target/api", "t0ken", transport=httpx.MockTransport(handler)) as client:
        return client.cancel(42, "fraud")


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (200, {"order": {"id": 42, "status": "cancelled", "cancel_reason": "fraud"}}, "delivered", None),
        (200, {"order": {"id": 42, "status": "open"}}, "rejected", "answer did not confirm the cancellation"),
        (404, {"errors": "Not Found"}, "not_found", "Not Found"),
        (400, {"errors": ["reason: is invalid", "id: bad"]}, "rejected", "reason: is invalid; id: bad"),
        (406, {"error": "Order is already cancelled"}, "rejected", "Order is already cancelled"),
        (401, {"errors": "Invalid API key"}, "bad_credentials", "Invalid API key"),
        (500, {"errors": "Internal Server Error"}, "retryable", "Internal Server Error"),
    ],
)
def test_answers_are_classified(status: int, body: object, kind: str, message: str | None) -> None:
    result = _answer(status, body)
    assert (result.kind, result.status, result.message) == (kind, status, message)
    assert result.says_already_cancelled == (status == 406)
    assert result.may_have_reached_target == (status == 500)
