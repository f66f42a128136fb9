"""Serving the built-in demo target for the length of a run, so the demo needs no other process."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

from cancel_pipeline.embedded import served_embedded_target
from cancel_pipeline.outbox.targets import DEMO_TARGET_TOKEN, Target


@contextlib.contextmanager
def reachable_targets(targets: Sequence[Target]) -> Iterator[list[Target]]:
    """`targets` with the demo target (if among them) served on 127.0.0.1 and given that base URL.

    The demo target forgets what it was sent when the run ends; the outbox's own table is what keeps an
    order from being sent twice, so the next run still sends nothing that was delivered.
    """
    with contextlib.ExitStack() as stack:
        resolved = []
        for target in targets:
            if target.is_demo:
                url = stack.enter_context(served_embedded_target(DEMO_TARGET_TOKEN))
                target = dataclasses.replace(target, base_url=url)
            resolved.append(target)
        yield resolved
