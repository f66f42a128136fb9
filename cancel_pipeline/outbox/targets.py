"""Downstream targets: which systems are told of cancellations, and how to reach them.

Targets are read from a JSON file whose path is in `CANCEL_PIPELINE_TARGETS`, one entry per name:

```json
{
  "targets": {
    "hotwax": {
      "base_url": "https://oms.example.com/api",
      "token_env": "HOTWAX_API_TOKEN",
      "enabled": true,
      "source_names": ["web", "pos"],
      "tags": ["wholesale"]
    }
  }
}
```

The token itself never appears in the file: `token_env` names the environment variable that holds it, read
only when a run calls the target. `CANCEL_PIPELINE_DEMO_TARGET=1` adds the built-in fake target, named
`demo_target`, served inside the run on 127.0.0.1. The file is read when a run starts, so edits take effect on
the next run. The file is also read when the definitions load, so an invalid file fails the load (and any
run) with a message naming the file, the target and the key.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cancel_pipeline.outbox.deliveries import OrderFilter

TARGETS_FILE_VARIABLE = "CANCEL_PIPELINE_TARGETS"
DEMO_TARGET_VARIABLE = "CANCEL_PIPELINE_DEMO_TARGET"
DEMO_TARGET_NAME = "demo_target"
DEMO_TARGET_TOKEN = "demo-target-token"
"""The built-in fake target's token: it guards nothing, so it is a constant rather than a secret."""
DEFAULT_TOKEN_HEADER = "X-Auth-Token"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetsError(ValueError):
    """The targets configuration cannot be used; the message names the file, the target and the key."""


@dataclass(frozen=True)
class Target:
    """One downstream system's Cancel Order API and the orders it is told about."""

    name: str
    base_url: str | None
    """`POST {base_url}/orders/{id}/cancel`; None only for the built-in demo target, served per run."""
    token_env: str
    """The environment variable holding the token (its name, never its value)."""
    token_header: str = DEFAULT_TOKEN_HEADER
    enabled: bool = True
    orders: OrderFilter = field(default_factory=OrderFilter)
    timeout_s: float = 10.0
    max_attempts: int = 5
    """Calls ending in a 500, a timeout or a connection error before the delivery is given up and flagged."""
    backoff_base_s: float = 60.0
    """Wait after the first retryable failure; doubled after each further one."""
    backoff_max_s: float = 3600.0
    max_per_run: int = 500
    """Deliveries one run attempts at most; the rest wait for the next run."""
    is_demo: bool = False
    """The built-in fake target, served by the run itself (its base URL is set once it is served)."""


class MissingToken(RuntimeError):
    """A target's token variable is unset or empty."""


def resolve_token(target: Target, environ: Mapping[str, str] | None = None) -> str:
    """The target's token from its environment variable; raises `MissingToken` naming the variable."""
    if target.is_demo:
        return DEMO_TARGET_TOKEN
    env = os.environ if environ is None else environ
    token = env.get(target.token_env, "")
    if not token:
        raise MissingToken(
            f"target {target.name!r}: environment variable {target.token_env} (its token) is not set"
        )
    return token


def demo_target() -> Target:
    """The built-in fake target, told of every canceled order, with quick retries for the demo."""
    return Target(
        name=DEMO_TARGET_NAME,
        base_url=None,
        token_env=DEMO_TARGET_VARIABLE,
        is_demo=True,
        timeout_s=5.0,
        backoff_base_s=30.0,
        backoff_max_s=600.0,
    )


def load_targets(environ: Mapping[str, str] | None = None) -> list[Target]:
    """Every configured target, enabled or not: the file's, then the demo target when it is switched on."""
    env = os.environ if environ is None else environ
    targets: list[Target] = []
    path = env.get(TARGETS_FILE_VARIABLE, "").strip()
    if path:
        targets += parse_targets_file(Path(path))
    if demo_target_switch(env):
        if any(target.name == DEMO_TARGET_NAME for target in targets):
            raise TargetsError(f"{path}: the name {DEMO_TARGET_NAME!r} is reserved for the demo target")
        targets.append(demo_target())
    return targets


_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


def demo_target_switch(environ: Mapping[str, str]) -> bool:
    """Whether `CANCEL_PIPELINE_DEMO_TARGET` switches the demo target on; a value that is neither on nor off
    is an error rather than a silent "off"."""
    raw = environ.get(DEMO_TARGET_VARIABLE, "")
    value = raw.strip().lower()
    if value not in _ON | _OFF:
        raise TargetsError(f"{DEMO_TARGET_VARIABLE} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")
    return value in _ON


def enabled_targets(environ: Mapping[str, str] | None = None) -> list[Target]:
    """The targets runs call."""
    return [target for target in load_targets(environ) if target.enabled]


def parse_targets_file(path: Path) -> list[Target]:
    """The targets of a JSON targets file, validated."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TargetsError(f"{TARGETS_FILE_VARIABLE}: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise TargetsError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); save "
            "the targets file as UTF-8"
        ) from None
    except json.JSONDecodeError as error:
        raise TargetsError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    entries = document.get("targets") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise TargetsError(f'{path}: expected an object {{"targets": {{"<name>": {{...}}}}}}')
    return [parse_target(name, entry, where=str(path)) for name, entry in entries.items()]


_KEYS = {
    "base_url",
    "token_env",
    "token_header",
    "enabled",
    "source_names",
    "tags",
    "canceled_since",
    "include_test_orders",
    "timeout_s",
    "max_attempts",
    "backoff_base_s",
    "backoff_max_s",
    "max_per_run",
}


def parse_target(name: str, entry: Any, *, where: str = "targets") -> Target:
    """One target from its configuration entry; unknown keys are errors, so a typo is never ignored."""
    at = f"{where}: target {name!r}"
    if not _NAME.match(name):
        raise TargetsError(f"{at}: names are lowercase letters, digits, '_' and '-'")
    if not isinstance(entry, dict):
        raise TargetsError(f"{at}: expected an object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise TargetsError(f"{at}: unknown keys {unknown}; known keys are {sorted(_KEYS)}")
    base_url = entry.get("base_url")
    if not isinstance(base_url, str) or not re.match(r"^https?://[^\s]+$", base_url):
        raise TargetsError(f"{at}: base_url must be an http(s) URL")
    token_env = entry.get("token_env")
    if not isinstance(token_env, str) or not _ENV_NAME.match(token_env):
        raise TargetsError(
            f"{at}: token_env must name an environment variable (the token is never in the file)"
        )
    return Target(
        name=name,
        base_url=base_url.rstrip("/"),
        token_env=token_env,
        token_header=_typed(entry, "token_header", str, DEFAULT_TOKEN_HEADER, at),
        enabled=_typed(entry, "enabled", bool, True, at),
        orders=OrderFilter(
            source_names=_strings(entry, "source_names", at),
            tags=_strings(entry, "tags", at),
            canceled_since=_instant(entry, "canceled_since", at),
            include_test_orders=_typed(entry, "include_test_orders", bool, False, at),
        ),
        timeout_s=_positive(entry, "timeout_s", 10.0, at),
        max_attempts=_count(entry, "max_attempts", 5, at),
        backoff_base_s=_positive(entry, "backoff_base_s", 60.0, at),
        backoff_max_s=_positive(entry, "backoff_max_s", 3600.0, at),
        max_per_run=_count(entry, "max_per_run", 500, at),
    )


def _typed(entry: dict[str, Any], key: str, kind: type, default: Any, at: str) -> Any:
    value = entry.get(key, default)
    if not isinstance(value, kind):
        raise TargetsError(f"{at}: {key} must be a {kind.__name__}")
    return value


def _strings(entry: dict[str, Any], key: str, at: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise TargetsError(f"{at}: {key} must be a list of non-empty strings")
    return tuple(value)


def _positive(entry: dict[str, Any], key: str, default: float, at: str) -> float:
    value = entry.get(key, default)
    # Python's JSON reader takes NaN and Infinity, which compare as neither positive nor not.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise TargetsError(f"{at}: {key} must be a positive number, got {value!r}")
    return float(value)


def _count(entry: dict[str, Any], key: str, default: int, at: str) -> int:
    # A fraction would be truncated, and 0.5 becoming 0 leaves every delivery pending for ever.
    value = entry.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TargetsError(f"{at}: {key} must be a whole number, at least 1, got {value!r}")
    return value


def _instant(entry: dict[str, Any], key: str, at: str) -> datetime | None:
    value = entry.get(key)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TargetsError(f"{at}: {key} must be an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
