"""The one runner of the FPGA tools, for `bbsparse synth` (:mod:`.flow`) and `bbsparse board`
(:mod:`.boards`): where the YoWASP commands are, and how a step runs, logs and fails.

A step's console output goes to its own log file in the build folder (removed when the tool
printed nothing); a failing step raises :class:`FlowError` with the tool's first error line
and the log to read, on one line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["FlowError", "tool_path", "yowasp", "run_step", "first_error"]


class FlowError(RuntimeError):
    """A tool failed or its result cannot be used; the message names the log to read."""


def tool_path(command: str) -> str:
    """The YoWASP command installed beside this Python (the project's venv), or on PATH."""
    local = Path(sys.executable).parent / command
    if local.exists():
        return str(local)
    found = shutil.which(command)
    if found:
        return found
    raise FlowError(f"{command} not found; install the FPGA tools with 'make venv' "
                    f"(pip install -e '.[dev]')")


def yowasp(tool: str) -> str:
    """The YoWASP build of an open-source tool named as its upstream names it (``yosys``,
    ``nextpnr-ecp5``, ``icepack``...): ``yowasp-<tool>``, located by :func:`tool_path`."""
    return tool_path(f"yowasp-{tool}")


def first_error(log: Path) -> str:
    """The first error line of a tool's log (else its last line; "" if there is none)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if line.startswith("ERROR") or " ERROR: " in line or line.startswith("Error"):
            return line.strip()
    return lines[-1].strip() if lines else ""


def run_step(name: str, argv: list[str], log: Path, cwd: Path) -> float:
    """Run one tool in `cwd` with its console output in `log` (removed if empty); the wall
    time in seconds. :class:`FlowError` naming the tool, its error and `log` if it fails."""
    start = time.monotonic()
    with open(log, "wb") as stream:
        try:
            status = subprocess.run(argv, cwd=cwd, stdout=stream,
                                    stderr=subprocess.STDOUT).returncode
        except OSError as exc:
            raise FlowError(f"{name} could not start ({argv[0]}): {exc.strerror}") from None
    if status != 0:
        print(" failed", flush=True)
        raise FlowError(f"{name} failed (exit {status}): {first_error(log)} (log: {log})")
    if log.stat().st_size == 0:
        log.unlink()
    return time.monotonic() - start
