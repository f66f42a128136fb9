"""Headless Chromium for the browser tests: Debian's `chromium` package driven by Playwright.

Playwright's own browser download is not used (it needs network access to a CDN at test time); the system
package is installed with apt-get when the tests run as root and it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM_PATH = Path("/usr/bin/chromium")

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_INSTALL_TIMEOUT_S = 600


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed and could not be installed here; the message says why."""


def ensure_chromium() -> Path:
    """The Chromium executable, installing Debian's `chromium` package first when it is missing."""
    if _is_executable(CHROMIUM_PATH):
        return CHROMIUM_PATH
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailable(f"{CHROMIUM_PATH} is missing and apt-get is not available to install it")
    if os.geteuid() != 0:
        raise ChromiumUnavailable(
            f"{CHROMIUM_PATH} is missing and installing it needs root: run `apt-get install -y chromium`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise ChromiumUnavailable(
                f"`{' '.join(command)}` did not finish in {_INSTALL_TIMEOUT_S} s"
            ) from None
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise ChromiumUnavailable(
                f"`{' '.join(command)}` failed with code {result.returncode}: " + " | ".join(output)
            )
    if not _is_executable(CHROMIUM_PATH):
        raise ChromiumUnavailable(f"apt-get installed chromium but {CHROMIUM_PATH} is still missing")
    return CHROMIUM_PATH


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
