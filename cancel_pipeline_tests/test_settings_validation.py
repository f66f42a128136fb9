"""Every setting is validated when it is loaded, and the error names the variable (or the file and the key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cancel_pipeline.outbox.targets import TargetsError, load_targets
from cancel_pipeline.settings import PipelineSettings, SettingsError
from cancel_pipeline.shopify.resource import ShopifyResource, ShopifySettingsError

ROOT = Path(__file__).resolve().parents[1]
SHOPIFY_VARIABLES = (
    "SHOPIFY_STORE",
    "SHOPIFY_ACCESS_TOKEN",
    "SHOPIFY_CLIENT_ID",
    "SHOPIFY_CLIENT_SECRET",
    "SHOPIFY_API_VERSION",
    "SHOPIFY_BUCKET_SIZE",
    "SHOPIFY_LEAK_RATE",
    "SHOPIFY_FETCH_STREAMS",
    "SHOPIFY_BULK_CONCURRENCY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SHOPIFY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT", "0MB"),
        ("CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT", "0.0 GB"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "pos=nan"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "web=inf"),
        ("CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS", "0"),
        ("CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS", "soon"),
        ("CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS", "nan"),
        ("CANCEL_PIPELINE_OVERLAP_MINUTES", "-1"),
        ("CANCEL_PIPELINE_OVERLAP_MINUTES", "999999999999"),
        ("CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS", "1e20"),
        ("CANCEL_PIPELINE_STUCK_THRESHOLDS_HOURS", "pos=1e20"),
    ],
)
def test_pipeline_settings_refuse_values_that_would_fail_later(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        PipelineSettings.from_env({name: value})
    assert name in str(raised.value) and repr(value).strip("'") in str(raised.value)
    assert "None" not in str(raised.value)


def test_pipeline_settings_accept_good_values() -> None:
    settings = PipelineSettings.from_env(
        {"CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT": "0.5GB", "CANCEL_PIPELINE_DELIVERY_OVERDUE_HOURS": "1.5"}
    )
    assert settings.duckdb_memory_limit == "0.5GB"
    assert settings.delivery_overdue.total_seconds() == 5400
    assert PipelineSettings.from_env({}).delivery_overdue.total_seconds() == 6 * 3600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOPIFY_BUCKET_SIZE", "abc"),
        ("SHOPIFY_BUCKET_SIZE", "0"),
        ("SHOPIFY_BUCKET_SIZE", "40.5"),
        ("SHOPIFY_LEAK_RATE", "-1"),
        ("SHOPIFY_LEAK_RATE", "0"),
        ("SHOPIFY_LEAK_RATE", "nan"),
        ("SHOPIFY_LEAK_RATE", "fast"),
        ("SHOPIFY_API_VERSION", "2026-13"),
        ("SHOPIFY_API_VERSION", "latest"),
        ("SHOPIFY_STORE", "ftp://my-shop.example.com"),
        ("SHOPIFY_STORE", "my shop"),
        ("SHOPIFY_FETCH_STREAMS", "lots"),
        ("SHOPIFY_BULK_CONCURRENCY", "lots"),
        ("SHOPIFY_BULK_CONCURRENCY", "0"),
        ("SHOPIFY_BULK_CONCURRENCY", "6"),
        ("SHOPIFY_BULK_CONCURRENCY", "2.5"),
    ],
)
def test_shopify_settings_fail_at_load_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ShopifySettingsError, match=name) as raised:
        ShopifyResource.from_env()
    assert repr(value) in str(raised.value)


def test_shopify_settings_accept_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPIFY_STORE", "http://127.0.0.1:8765")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_x")
    monkeypatch.setenv("SHOPIFY_API_VERSION", "2026-07")
    monkeypatch.setenv("SHOPIFY_BUCKET_SIZE", " 80 ")
    monkeypatch.setenv("SHOPIFY_LEAK_RATE", "4.5")
    resource = ShopifyResource.from_env()
    assert (resource.bucket_size, resource.leak_rate) == (80, 4.5)


def _targets_file(tmp_path: Path, entry: dict) -> dict[str, str]:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": {"oms": {"base_url": "https://x", "token_env": "T", **entry}}}))
    return {"CANCEL_PIPELINE_TARGETS": str(path)}


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"max_per_run": 0.5}, "max_per_run"),
        ({"max_attempts": 0.9}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_per_run": "10"}, "max_per_run"),
        ({"max_per_run": True}, "max_per_run"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"backoff_max_s": float("inf")}, "backoff_max_s"),
    ],
)
def test_targets_refuse_counts_that_are_not_whole(tmp_path: Path, entry: dict, key: str) -> None:
    env = _targets_file(tmp_path, entry)
    with pytest.raises(TargetsError) as raised:
        load_targets(env)
    message = str(raised.value)
    assert env["CANCEL_PIPELINE_TARGETS"] in message and "'oms'" in message and key in message


def test_targets_take_a_whole_float_as_a_count(tmp_path: Path) -> None:
    [target] = load_targets(_targets_file(tmp_path, {"max_per_run": 20.0, "max_attempts": 3}))
    assert (target.max_per_run, target.max_attempts) == (20, 3)
    assert isinstance(target.max_per_run, int)


def test_a_targets_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_bytes('{"targets": {"caf\u00e9": {}}}'.encode("latin-1"))
    with pytest.raises(TargetsError, match="not UTF-8") as raised:
        load_targets({"CANCEL_PIPELINE_TARGETS": str(path)})
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("value", ["ture", "2", "enabled"])
def test_a_demo_switch_that_is_neither_on_nor_off_is_refused(value: str) -> None:
    with pytest.raises(TargetsError, match="CANCEL_PIPELINE_DEMO_TARGET"):
        load_targets({"CANCEL_PIPELINE_DEMO_TARGET": value})
    assert load_targets({"CANCEL_PIPELINE_DEMO_TARGET": "off"}) == []


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"SHOPIFY_LEAK_RATE": "-1"}, "SHOPIFY_LEAK_RATE"),
        ({"CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT": "0MB"}, "CANCEL_PIPELINE_DUCKDB_MEMORY_LIMIT"),
        ({"CANCEL_PIPELINE_TARGETS": "{targets}"}, "max_per_run must be a whole number"),
    ],
)
@pytest.mark.timeout(120)
def test_loading_the_definitions_fails_on_a_bad_setting(tmp_path: Path, variables: dict, named: str) -> None:
    targets = tmp_path / "targets.json"
    targets.write_text(
        json.dumps({"targets": {"oms": {"base_url": "https://x", "token_env": "T", "max_per_run": 0.5}}})
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SHOPIFY_", "CANCEL_PIPELINE_"))},
        **{name: value.format(targets=targets) for name, value in variables.items()},
    }
    loaded = subprocess.run(
        [sys.executable, "-c", "import cancel_pipeline.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert loaded.returncode != 0
    assert named in loaded.stderr
