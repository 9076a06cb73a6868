"""Chromium for the browser test: Debian's package (never a browser download), installed with
apt-get where it is missing (CI machines run as root, like the PostgreSQL install), with a
Chinese font so that the screenshots show the text, and launched with flags that work in a
container without a display."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM", "LAUNCH_ARGS", "ensure_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
PACKAGES = ["chromium", "fonts-wqy-microhei"]
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # as root in a container there is no user namespace to sandbox with
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """Debian's chromium (and a Chinese font), installed with apt-get if not there yet."""
    if CHROMIUM.exists() and CJK_FONT.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    assert apt, "no /usr/bin/chromium and no apt-get to install it with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-qq", *PACKAGES]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        # A fresh machine has no package lists yet.
        subprocess.run([apt, "update", "-qq"], env=env, check=True, capture_output=True)
        done = subprocess.run(install, env=env, check=False, capture_output=True, text=True)
        assert done.returncode == 0, f"apt-get install {PACKAGES} failed:\n{done.stderr[-2000:]}"
    assert CHROMIUM.exists(), "apt-get installed chromium but /usr/bin/chromium is missing"
    return CHROMIUM
