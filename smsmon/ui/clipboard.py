"""Copying text where it will arrive. The terminal's clipboard escape (OSC 52) is sent always but
cannot be confirmed, and inside tmux it is dropped unless tmux passes it on; so the text also goes
to tmux's paste buffer when inside tmux, and to the system clipboard through wl-copy, xclip or
pbcopy where one is installed. The caller says where it went, and offers a file when nothing
confirmed it."""

from __future__ import annotations

import os
import shutil
import subprocess

# (command, where it puts the text), tried in order; the first that works of the system ones is enough.
SYSTEM_TOOLS = [
    (["wl-copy"], "the Wayland clipboard (wl-copy)"),
    (["xclip", "-selection", "clipboard"], "the X clipboard (xclip)"),
    (["pbcopy"], "the macOS clipboard (pbcopy)"),
]
TIMEOUT_S = 2.0


def _run(command: list[str], text: str) -> bool:
    try:
        return subprocess.run(command, input=text.encode(), capture_output=True, timeout=TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def copy_confirmed(text: str) -> list[str]:
    """Copy to tmux's buffer (inside tmux) and to the first system clipboard tool that works;
    return where it went (empty: nowhere that can be confirmed)."""
    went = []
    if os.environ.get("TMUX") and shutil.which("tmux") and _run(["tmux", "load-buffer", "-"], text):
        went.append("tmux's paste buffer (prefix ] pastes it)")
    for command, where in SYSTEM_TOOLS:
        if shutil.which(command[0]) and _run(command, text):
            went.append(where)
            break
    return went
