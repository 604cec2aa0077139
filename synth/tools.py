"""The one runner of the FPGA tools, for `bbsparse synth` (:mod:`.flow`) and `bbsparse board`
(:mod:`.boards`): where the YoWASP commands are, and how a step runs, logs, shows its
progress and fails.

A step's console output goes to its own log file in the build folder (removed when the tool
printed nothing); a failing step raises :class:`FlowError` with the tool's first error line
and the log to read, on one line.

While a step with a title runs, the parent reads the tool's log as it grows (a few times a
second; the tool itself is not slowed) and shows what the tool is doing: Yosys' current pass,
nextpnr's placer or router with its iteration and figures (:class:`YosysPhases`,
:class:`NextpnrPhases`). On a terminal that is one line, redrawn in place by `rich` and
erased when the step ends; otherwise (a file, a pipe, CI) a timestamped line every
:data:`HEARTBEAT_SECONDS`. The step's own result line is the caller's to print afterwards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["FlowError", "TimeLimitError", "tool_path", "yowasp", "run_step", "first_error",
           "duration_text", "LogTail", "YosysPhases", "NextpnrPhases", "phases_for", "LiveStatus",
           "POLL_SECONDS", "HEARTBEAT_SECONDS"]

#: How often the parent reads the tool's log while the tool runs.
POLL_SECONDS = 0.3
#: Off a terminal: the first progress line after this long, then one this often.
HEARTBEAT_SECONDS = 10.0


class FlowError(RuntimeError):
    """A tool failed or its result cannot be used; the message names the log to read."""


class TimeLimitError(FlowError):
    """A tool still running at its time limit, stopped (:func:`run_step`): the message says
    the phase it was in and names its log."""


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


def duration_text(seconds: float) -> str:
    """``"42 s"``, ``"1 min 40 s"``, ``"1 h 05 min"``: a wall time for people."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# -- reading a tool's log while it runs -----------------------------------------------------


class LogTail:
    """The complete lines appended to a growing file since the last call of :meth:`lines`
    (a missing file has none yet; a file that shrank is read again from its start)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(0, 2)
                if stream.tell() < self._offset:  # rewritten: start again
                    self._offset, self._partial = 0, b""
                stream.seek(self._offset)
                data = stream.read()
        except OSError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in complete]


class Phases:
    """What a tool is doing, from its log lines: feed each line, read :attr:`text`."""

    def __init__(self):
        self.text = ""

    def feed(self, line: str) -> None:
        pass


class YosysPhases(Phases):
    """Yosys' current pass, from its log's numbered ``Executing`` lines, e.g.
    ``2.46.16.4. Executing ABC9_EXE pass (technology mapping using ABC9).``"""

    _PASS = re.compile(r"^(\d+(?:\.\d+)*)\. Executing (.+?)\.?\s*$")

    def __init__(self):
        super().__init__()
        self.text = "starting"

    def feed(self, line: str) -> None:
        match = self._PASS.match(line)
        if match:
            self.text = f"{match[1]} {match[2]}"


class NextpnrPhases(Phases):
    """nextpnr's phase (packing, analytic placement, annealing, routing, timing) with its
    iteration and figures, from the ``Info:`` lines nextpnr-ice40 and nextpnr-ecp5 write:

    - HeAP: ``at iteration #N, type ALL: wirelen solved = ..., spread = ..., legal = L; ...``
    - annealing: ``at iteration #N: temp = ..., timing cost = C, wirelen = W``
    - router1: ``Routing N arcs.`` then rows ``IterCnt | ... | remaining arcs | ... |``
    - router2: ``iter=N wires=W overused=O overuse=U ...``
    """

    _RULES = (
        ("packing", re.compile(r"^(Packing|Logic utilisation before packing)")),
        ("initial", re.compile(r"^Creating initial analytic placement for (\d+) cells")),
        ("heap", re.compile(r"^Running main analytical placer")),
        ("heap_iter", re.compile(r"^at iteration #(\d+), type \w+: wirelen solved = \d+, "
                                 r"spread = \d+, legal = (\d+)")),
        ("sa", re.compile(r"^Running simulated annealing placer")),
        ("sa_iter", re.compile(r"^at iteration #(\d+): temp = [\d.e+-]+, timing cost = (\d+), "
                               r"wirelen = (\d+)")),
        ("fmax", re.compile(r"^Max frequency for clock '[^']*': ([\d.]+) MHz \((PASS|FAIL) at "
                            r"([\d.]+) MHz\)")),
        ("globals", re.compile(r"^Routing globals")),
        ("arcs", re.compile(r"^Routing (\d+) arcs")),
        ("router1", re.compile(r"^(\d+) \|\s*\d+\s+\d+ \|\s*\d+\s+\d+ \|\s*(\d+)\|")),
        ("router2", re.compile(r"^Running router2")),
        ("router2_iter", re.compile(r"^iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)")),
        ("routed", re.compile(r"^Routing complete")),
        ("report", re.compile(r"^Critical path report")),
        ("done", re.compile(r"^Program finished normally")),
    )

    def __init__(self):
        super().__init__()
        self.text = "reading the netlist"
        self._arcs = None
        self._routed = False

    def feed(self, line: str) -> None:
        # A missed constraint makes the Fmax line a warning.
        prefix = next((p for p in ("Info:", "Warning:") if line.startswith(p)), None)
        if prefix is None:
            return
        body = line[len(prefix):].strip()
        for kind, pattern in self._RULES:
            match = pattern.match(body)
            if match:
                self._take(kind, match)
                return

    def _take(self, kind: str, m: re.Match) -> None:
        # Short enough that the title, the time and the figures fit an 80-column line.
        if kind == "packing":
            self.text = "packing"
        elif kind == "initial":
            self.text = f"placing: initial analytic placement of {m[1]} cells"
        elif kind == "heap":
            self.text = "placing (analytic)"
        elif kind == "heap_iter":
            self.text = f"placing (analytic) #{m[1]}: legal wirelength {m[2]}"
        elif kind == "sa":
            self.text = "placing (annealing)"
        elif kind == "sa_iter":
            self.text = f"placing (annealing) #{m[1]}: wirelength {m[3]}, timing cost {m[2]}"
        elif kind == "fmax":
            when = "routed" if self._routed else "placed"
            self.text = f"{when}: Fmax {m[1]} MHz ({m[2]} at {m[3]} MHz)"
        elif kind == "globals":
            self.text = "routing: global nets"
        elif kind == "arcs":
            self._arcs = int(m[1])
            self.text = f"routing (router1): {self._arcs} arcs"
        elif kind == "router1":
            total = f"/{self._arcs}" if self._arcs else ""
            self.text = f"routing (router1) #{m[1]}: {m[2]}{total} arcs left"
        elif kind == "router2":
            self.text = "routing (router2)"
        elif kind == "router2_iter":
            self.text = f"routing (router2) #{m[1]}: {m[3]} of {m[2]} wires overused"
        elif kind == "routed":
            self._routed = True
            self.text = "routing complete"
        elif kind == "report":
            self.text = "timing report"
        elif kind == "done":
            self.text = "finished"


def phases_for(tool: str) -> Phases:
    """The log reader for a tool named as upstream names it (``yosys``, ``nextpnr-ecp5``...);
    a tool whose log says nothing of its progress (the packers) gets one that stays empty."""
    if tool.startswith("yosys"):
        return YosysPhases()
    if tool.startswith("nextpnr"):
        return NextpnrPhases()
    return Phases()


def followed_log(argv: list[str], cwd: Path, console_log: Path) -> Path:
    """The file a tool writes its log to: the argument of Yosys' ``-l`` / ``-L`` or
    nextpnr's ``-l`` / ``--log``, else its console output (`console_log`)."""
    for option, value in zip(argv, argv[1:], strict=False):
        if option in ("-l", "-L", "--log"):
            return Path(cwd) / value
    return console_log


# -- showing it --------------------------------------------------------------------------------


class LiveStatus:
    """A running step's progress: on a terminal one line redrawn in place (rich's status,
    erased on :meth:`stop`); elsewhere a timestamped line, the first after `heartbeat` / 2
    seconds and then at most one every `heartbeat` seconds (:data:`HEARTBEAT_SECONDS`).

    `console` is a :class:`rich.console.Console` (default: stdout); whether it is a terminal
    decides the mode."""

    def __init__(self, title: str, *, console=None, heartbeat: float | None = None,
                 clock=time.monotonic):
        from rich.console import Console

        self.title = title
        self.console = console if console is not None else Console()
        self.live = self.console.is_terminal and not self.console.is_dumb_terminal
        self.heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        self.clock = clock
        self.start = clock()
        self._next_line = self.start + self.heartbeat / 2
        self._status = None

    def _text(self, phase: str):
        from rich.text import Text

        elapsed = duration_text(self.clock() - self.start)
        return Text(f"{self.title}, {elapsed}" + (f": {phase}" if phase else ""))

    def update(self, phase: str) -> None:
        if self.live:
            # One line: cut to the terminal's width less the spinner's two columns.
            text = self._text(phase)
            text.truncate(max(10, self.console.width - 3), overflow="ellipsis")
            if self._status is None:
                self._status = self.console.status(text, refresh_per_second=4)
                self._status.start()
            else:
                self._status.update(text)
            return
        now = self.clock()
        if now >= self._next_line:
            self._next_line = now + self.heartbeat
            stamp = time.strftime("%H:%M:%S")
            print(f"  {stamp} {self._text(phase).plain}", file=self.console.file, flush=True)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def run_step(name: str, argv: list[str], log: Path, cwd: Path, *, title: str | None = None,
             console=None, time_limit: float | None = None) -> float:
    """Run one tool in `cwd` with its console output in `log` (removed if empty); the wall
    time in seconds. :class:`FlowError` naming the tool, its error and `log` if it fails.

    With a `title` (the step's line, e.g. ``[3/4] nextpnr-ecp5``) the step's progress is
    shown while it runs (:class:`LiveStatus`, read from the log the tool writes:
    :func:`followed_log`), and nothing is left on the screen when it ends but, on failure,
    ``<title> failed``: the caller prints the step's result line. Without one nothing is
    shown (a caller that has already printed the start of a line), and a failure adds
    `` failed`` to that line.

    `time_limit` (seconds): a tool still running then is stopped, and :class:`TimeLimitError`
    says so with the phase it was in (nextpnr's router1 can sit in a congestion tail for an
    hour, DESIGN §12.8).
    """
    start = time.monotonic()
    with open(log, "wb") as stream:
        try:
            process = subprocess.Popen(argv, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise FlowError(f"{name} could not start ({argv[0]}): {exc.strerror}") from None
        status = None
        tail = LogTail(followed_log(argv, cwd, log))
        phases = phases_for(name)
        try:
            if title is not None:
                status = LiveStatus(title, console=console)
            while True:
                if title is not None:
                    for line in tail.lines():
                        phases.feed(line)
                    status.update(phases.text)
                try:
                    process.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time_limit is not None and time.monotonic() - start > time_limit:
                    # The tool is stopped below (finally), after its last phase is read.
                    for line in tail.lines():
                        phases.feed(line)
                    if status is not None:
                        status.stop()
                        status = None
                    print(" stopped" if title is None else f"{title} stopped", flush=True)
                    raise TimeLimitError(
                        f"{name} stopped after the time limit of {duration_text(time_limit)}"
                        + (f", in {phases.text}" if phases.text else "")
                        + f" (log: {tail.path})")
        finally:
            if status is not None:
                status.stop()
            if process.poll() is None:  # interrupted: do not leave the tool running
                process.kill()
                process.wait()
    if process.returncode != 0:
        print(" failed" if title is None else f"{title} failed", flush=True)
        # The tool's own log (-l) holds the error when its console output is empty.
        where = log
        if not first_error(log).strip():
            written = followed_log(argv, cwd, log)
            if written.is_file() and written.stat().st_size:
                where = written
        raise FlowError(f"{name} failed (exit {process.returncode}): {first_error(where)} "
                        f"(log: {where})")
    if log.stat().st_size == 0:
        log.unlink()
    return time.monotonic() - start
