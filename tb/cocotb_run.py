"""Building designs for cocotb under Verilator, once per design, and running tests on them.

A :class:`Design` is a Verilog text, its top module and the cocotb test module that drives
it: the SpMV core of a configuration (:func:`spmv_design`; :func:`build` and :func:`run`
take the :class:`~bbsparse.golden.config.Config` directly), or any Amaranth component
(:func:`component_design`, used for the gather and scatter units).

:func:`build_design` builds a design with ``cocotb_tools.runner`` into
``build_root()/cocotb-<top>-<hash>``, where the hash covers the top name, the Verilog text,
the lint waivers, the flags and the tool versions: an unchanged design is built once and
shared by every test, worker and later run. Writing the sources and building happen under a
file lock, so parallel pytest workers (``-n 2``) wait for a build of the same design instead
of colliding, and builds of different designs go ahead side by side. :func:`run_design`
runs cocotb tests against a build, each test in its own ``test_dir`` (locked: two runs in
one folder collide, "Text file busy"), and turns a failing run into a :class:`CocotbFailure`
that carries the assertion text from the results XML and the log, not just the
``SystemExit`` the runner raises.

Verilator runs with ``-Wall`` and the per-rule waivers of :data:`bbsparse.tb.verilator.WAIVERS`
(given to Verilator as a ``.vlt`` control file); any other warning fails the build. make runs
with two adjustments (:func:`_make_env`): the precompiled-header flag the PyPI wheel's
verilated.mk lacks, and :func:`bbsparse.toolchain.objcache`, which compiles Verilator's
run-time library once for all configurations instead of once per configuration.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from .. import toolchain
from ..golden.config import Config
from ..hdl.generate import TOP_NAME, verilog_text
from ..toolchain import build_root
from .verilator import WAIVERS, lint_flags

__all__ = [
    "Build",
    "CocotbFailure",
    "Design",
    "PARAMS_ENV",
    "TIMESCALE",
    "build",
    "build_design",
    "component_design",
    "payload_fields",
    "run",
    "run_design",
    "spmv_design",
]

TIMESCALE = ("1ns", "1ps")
# The cocotb test module reads its parameters (JSON) from this environment variable.
PARAMS_ENV = "BBSPARSE_TB_PARAMS"
TEST_MODULE = "bbsparse.tb.spmv_tb"


class CocotbFailure(AssertionError):
    """A cocotb run that failed; the message holds the failing tests' assertion texts."""


@dataclass(frozen=True)
class Design:
    """What one build holds and which cocotb module tests it."""

    toplevel: str  # the top module; the Verilog goes to <toplevel>.v (tb/verilator.py WAIVERS)
    verilog: str
    test_module: str  # the cocotb test module run against the build
    label: str  # names the design in messages: the configuration, the unit's parameters
    description: dict | None = field(default=None, compare=False)  # saved as <toplevel>.json
    config: Config | None = None  # the SpMV configuration, for :func:`build`'s callers


@dataclass(frozen=True)
class Build:
    design: Design
    folder: Path  # build_root()/cocotb-<top>-<hash>: sources, lock-protected build, runs/
    sim_build: Path  # the runner's build_dir (Verilator -Mdir)
    seconds: float  # Verilator + C++ build time (as recorded when it was built)
    cached: bool  # True if this call found the build already done
    warnings: tuple[str, ...]  # Verilator warnings in the build log (waived ones are silent)

    @property
    def config(self) -> Config | None:
        return self.design.config


@functools.cache
def spmv_design(config: Config) -> Design:
    """The core `bbs_spmv` of `config`, tested by :mod:`bbsparse.tb.spmv_tb`."""
    from ..hdl.generate import describe

    return Design(TOP_NAME, verilog_text(config), TEST_MODULE, str(config),
                  describe(config), config)


def component_design(component, toplevel: str, test_module: str, label: str,
                     description: dict | None = None) -> Design:
    """An Amaranth `component` as module `toplevel` (``emit_src=False``: the text depends on
    the design only, so the build is cached across edits elsewhere)."""
    from amaranth.back import verilog

    text = verilog.convert(component, name=toplevel, emit_src=False)
    return Design(toplevel, text, test_module, label, description)


def payload_fields(shape) -> list[list]:
    """How a port of `shape` packs into its flat Verilog vector: ``[name, offset, width,
    count]`` per field, where a field of an ``ArrayLayout`` holds `count` elements of `width`
    bits, element 0 in the low bits. A ``StructLayout`` gives its fields in declaration
    order; any other shape is one field named ``""``. JSON-serialisable, for a testbench."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    def one(name, offset, item):
        if isinstance(item, data.ArrayLayout):
            return [name, offset, Shape.cast(item.elem_shape).width, item.length]
        return [name, offset, Shape.cast(item).width, 1]

    if isinstance(shape, data.StructLayout):
        return [one(name, f.offset, f.shape) for name, f in shape]
    return [one("", 0, shape)]


def _tool_versions() -> str:
    from importlib.metadata import version

    return (f"cocotb {version('cocotb')}; verilator {version('verilator')} at "
            f"{toolchain.verilator_root()}")


def build(config: Config, *, waves: bool = False) -> Build:
    """Generate and build the core of `config` (once); return where the build is."""
    return build_design(spmv_design(config), waves=waves)


def build_design(design: Design, *, waves: bool = False) -> Build:
    """Build `design` (once); return where the build is."""
    toolchain.use_verilator()  # the runner passes os.environ on to Verilator and make
    top = design.toplevel
    flags = lint_flags()
    digest = hashlib.sha256()
    for part in (top, design.verilog, WAIVERS, flags, TIMESCALE, waves, _tool_versions()):
        digest.update(repr(part).encode())
    folder = build_root() / f"cocotb-{top}-{digest.hexdigest()[:16]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    sim_build = folder / "sim_build"
    stamp = folder / "built"
    with FileLock(str(folder) + ".lock"):
        cached = stamp.exists()
        if not cached:
            from ..hdl.generate import write_if_changed

            verilog = folder / f"{top}.v"
            waivers = folder / "waivers.vlt"
            write_if_changed(verilog, design.verilog)
            write_if_changed(waivers, WAIVERS)
            if design.description is not None:
                write_if_changed(folder / f"{top}.json",
                                 json.dumps(design.description, indent=2) + "\n")
            _runner_build(design, folder, sim_build, verilog, waivers, flags, waves)
            stamp.write_text("ok\n")
    seconds = float((folder / "build_seconds").read_text())
    log = (folder / "build.log").read_text(errors="replace")
    found = tuple(line for line in log.splitlines() if line.startswith("%Warning"))
    return Build(design, folder, sim_build, seconds, cached, found)


def _runner_build(design, folder, sim_build, verilog, waivers, flags, waves) -> None:
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    log_file = folder / "build.log"
    start = time.monotonic()
    try:
        with _make_env():
            runner.build(
                sources=[waivers, verilog],
                hdl_toplevel=design.toplevel,
                build_dir=sim_build,
                build_args=flags,
                timescale=TIMESCALE,
                waves=waves,
                always=False,
                log_file=log_file,
            )
    except (RuntimeError, SystemExit) as exc:
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        raise RuntimeError(
            f"Verilator build of {design.label} failed ({exc}); {log_file}:\n{log[-6000:]}"
        ) from None
    (folder / "build_seconds").write_text(f"{time.monotonic() - start:.2f}\n")


@contextlib.contextmanager
def _make_env():
    """os.environ set up for one build (:func:`bbsparse.toolchain.verilator_build_env`):
    the cocotb runner hands os.environ on to Verilator and make."""
    changes = {name: value for name, value in toolchain.verilator_build_env().items()
               if os.environ.get(name) != value}
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def run(config: Config, params: dict, testcases, *, name: str = "run",
        waves: bool = False, replay: str = "") -> Path:
    """Run the cocotb `testcases` of :mod:`bbsparse.tb.spmv_tb` on `config`'s build.

    `params` (JSON-serialisable) reach the test module with the config added; otherwise as
    :func:`run_design`.
    """
    __tracebackhide__ = True
    return run_design(spmv_design(config), {**params, "config": config.to_dict()}, testcases,
                      name=name, waves=waves, replay=replay)


def run_design(design: Design, params: dict, testcases, *, name: str = "run",
               waves: bool = False, replay: str = "") -> Path:
    """Run the cocotb `testcases` of ``design.test_module`` on `design`'s build.

    `params` (JSON-serialisable) reach the test module through the environment variable
    :data:`PARAMS_ENV`; ``params["seed"]`` is also cocotb's seed. The run happens in
    ``<build folder>/runs/<name>`` (emptied first), which keeps the log, the results XML and
    the testbench's summary JSON; that folder is returned. Raises :class:`CocotbFailure` if
    any test failed or the simulator died, with each failure's message, the seed, `replay`
    (how to run it again) and the log from the first failure on.
    """
    __tracebackhide__ = True
    from cocotb_tools.runner import get_runner

    built = build_design(design, waves=waves)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
    # One folder per test name, holding its latest run; the lock keeps two runs of the same
    # name (two pytest sessions) out of one folder, where they would collide.
    test_dir = built.folder / "runs" / safe
    results = test_dir / "results.xml"
    log_file = test_dir / "sim.log"
    failed_exit = None
    with FileLock(str(test_dir) + ".lock"):
        shutil.rmtree(test_dir, ignore_errors=True)
        try:
            get_runner("verilator").test(
                test_module=design.test_module,
                hdl_toplevel=design.toplevel,
                hdl_toplevel_lang="verilog",
                testcase=list(testcases),
                build_dir=built.sim_build,
                test_dir=test_dir,
                results_xml=str(results),
                extra_env={PARAMS_ENV: json.dumps(params)},
                seed=params.get("seed"),
                timescale=TIMESCALE,
                waves=waves,
                log_file=log_file,
            )
        except (SystemExit, RuntimeError) as exc:
            failed_exit = exc
    problems = _failures(results, list(testcases))
    if failed_exit is not None or problems:
        raise CocotbFailure(_report(design, params, test_dir, results, log_file, problems,
                                    failed_exit, replay))
    return test_dir


def _failures(results: Path, wanted: list[str]) -> list[str]:
    """One line per failed, errored or missing test of the results XML."""
    if not results.is_file():
        return [f"no results file {results}: the simulator ended abnormally"]
    problems = []
    seen = set()
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        name = case.get("name", "?")
        seen.add(name)
        for tag in ("failure", "error"):
            for item in case.iter(tag):
                text = (item.get("message") or item.text or "").strip()
                problems.append(f"{name}: {tag}: {text}")
    for name in wanted:
        if not any(name == s or s.endswith("." + name) for s in seen):
            problems.append(f"{name}: did not run (not in {results.name})")
    return problems


def _report(design, params, test_dir, results, log_file, problems, exc, replay) -> str:
    # The failures come first: pytest's one-line summary shows the first line.
    lines = problems or [f"the simulator failed ({type(exc).__name__}: {exc})"]
    lines += [f"seed = {params.get('seed')}" + (f"; replay: {replay}" if replay else ""),
              f"design = {design.label}",
              f"params = {json.dumps(params)}",
              f"run folder: {test_dir}"]
    if exc is not None and problems:
        lines.append(f"runner: {type(exc).__name__}: {exc}")
    if log_file.is_file():
        log = log_file.read_text(errors="replace").splitlines()
        # cocotb logs "<test> failed" followed by the traceback with the assertion text; a
        # simulator that died leaves its last words at the end.
        starts = [i for i, line in enumerate(log)
                  if "cocotb.regression" in line and " failed" in line]
        start = starts[0] if starts else max(0, len(log) - 40)
        lines.append(f"--- {log_file} (from line {start + 1}) ---")
        lines += log[start:start + 60]
    return "\n".join(lines)
