"""A soak of the RTL: random cases, every one drawn from (seed, index) and checked against the
golden model.

A :class:`Plan` (seed, size of the configuration pool, engines) fixes everything. Its pool
holds ``configs`` configurations, slot ``i`` drawn from ``(seed, i)`` for engine
``engines[i % len(engines)]``, so a smaller pool is the first slots of a larger one. Case
``k`` is drawn from ``(seed, k)`` alone: a configuration of the pool, a matrix (a pruner of
:data:`~bbsparse.golden.prune.PRUNERS` or a random mask, whichever gives a matrix the
engine's format accepts), a batch of vectors, values across the full signed ranges, the
stream order where the engine's packer has one, and the stall probabilities. Whatever the
number of cases or jobs, case ``k`` is the same, and :meth:`Plan.replay` names the command
that runs it alone.

Every case runs on the RTL under Verilator through :func:`bbsparse.tb.harness.run_spmv` and
is checked (:func:`check_case`) for: y equal to :func:`bbsparse.golden.spmv.spmv` bit for
bit, ``error`` low, ``tlast`` on the last y beat of each vector only, never fewer cycles than
the model's ideal plus the pipeline latency (DESIGN §7.1), and, where the project claims it
(DESIGN §14.4, the regimes of tests/test_rtl_spmv.py and tests/test_rtl_unstructured.py;
:func:`exact_cycles_claimed`), exactly that many cycles. A stall-free run outside those
regimes whose count differs from the model is recorded as a note, not a failure.

Each configuration costs an Amaranth elaboration (0.4-4 s) and a Verilator build (5-50 s),
each case a few milliseconds of simulation, so :func:`run_soak` first generates the Verilog of
every configuration the cases use, then builds them, both in parallel, then runs the cases in
chunks of one configuration each, every chunk reusing its configuration's Verilog text.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import math
import multiprocessing
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..golden import spmv as golden
from ..golden.config import Config, ConfigError
from ..golden.prune import OPTIONS, PRUNERS, PruneOptionError
from ..golden.unstructured import ORDERS
from ..hdl.engines import ENGINES
from ..hdl.generate import describe
from . import harness
from .harness import Stalls

__all__ = [
    "DEFAULT_CONFIGS", "MAX_ROWS", "Case", "CaseResult", "Plan", "Summary", "check_case",
    "draw_case", "draw_pool", "exact_cycles_claimed", "expected_y", "run_case", "run_soak",
]

#: Size of the configuration pool unless the plan says otherwise.
DEFAULT_CONFIGS = 40
#: Rows of a case's matrix at most (fewer where a configuration's row groups are long).
MAX_ROWS = 100
#: Vectors of a batch at most.
MAX_VECTORS = 4
#: Columns of a configuration at most: x frames and w frames then stay within the
#: harness's smallest memory bucket, so one build serves every case of a configuration.
MAX_COLS = 512
#: The depth of the harness's smallest memory bucket (``tb/harness.py``, ``_bucket``).
BUCKET = 4096
#: Cases of one configuration sent to a worker at a time.
CHUNK = 20

# The streams of random numbers: the pool's slots and the cases never share one.
_POOL_STREAM = 0
_CASE_STREAM = 1


# -- the plan and its pool ------------------------------------------------------------------


def _width(rng) -> int:
    """A signed width from 2 to 16 bits, the edges and the usual 8 more often."""
    return int(rng.choice([2, 2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 11, 12, 13, 15, 16, 16]))


def _draw_parameters(rng) -> dict:
    """One candidate set of parameters; :class:`Config` and :func:`_fits` judge it."""
    # Half any count (an engine that needs a power of two refuses the rest), half a power.
    lanes = int(rng.integers(1, 17)) if rng.random() < 0.5 else int(rng.choice([1, 2, 4, 8, 16]))
    bank_size = int(rng.choice([1, 2, 3, 4, 4, 5, 8, 8, 16]))
    u = rng.random()
    nnz = 1 if u < 0.3 else bank_size if u < 0.5 else int(rng.integers(1, bank_size + 1))
    # Often not a multiple of lanes: the last round of a row then has padding banks.
    banks = int(rng.integers(1, 3 * lanes + 4))
    params = dict(lanes=lanes, pes=int(rng.integers(1, 5)), bank_size=bank_size,
                  nnz_per_bank=nnz, cols=banks * bank_size, weight_width=_width(rng),
                  act_width=_width(rng), tree_levels_per_stage=int(rng.integers(1, 4)),
                  relu=bool(rng.random() < 0.3))
    return params


def _finish(rng, config: Config) -> Config:
    """`config` with drawn output-stage widths: a narrower accumulator (which wraps), a
    narrower output (which saturates), a shift (which rounds)."""
    product = config.weight_width + config.act_width
    acc = config.acc_width
    if rng.random() < 0.3:
        acc = int(rng.integers(product, acc + 1))
    out = acc if rng.random() < 0.5 else int(rng.integers(1, acc + 1))
    u = rng.random()
    shift = 0 if u < 0.4 else int(rng.integers(0, min(acc, 6))) if u < 0.8 \
        else int(rng.integers(0, acc))
    return dataclasses.replace(config, acc_width=acc, out_width=out, out_shift=shift)


def _order_option(config: Config) -> bool:
    """Whether the engine's packer takes the harness's ``order`` (a stream order)."""
    return "order" in inspect.signature(config.format.pack).parameters


def _order_options(config: Config) -> tuple[str | None, ...]:
    return ORDERS if _order_option(config) else (None,)


@functools.lru_cache(maxsize=256)
def group_beats(config: Config) -> int:
    """The most w beats one row group can take: those of the fullest group the engine
    accepts (dense, or pruned to the configuration's banks), in any stream order."""
    shape = (config.pes, config.cols)
    dense = np.ones(shape, dtype=np.int64)
    fullest = [dense]
    shared = {name: None for name in OPTIONS}
    shared.update(bank_size=config.bank_size, nnz_per_bank=config.nnz_per_bank)
    for pruner in PRUNERS.values():
        try:
            params, _ = pruner.resolve(shared, shape)
        except PruneOptionError:
            continue
        fullest.append(pruner(dense, **params))
    x = np.zeros((1, config.cols), dtype=np.int64)
    return max(len(config.format.pack(config, W, x, **({} if order is None else
                                                       {"order": order})).w_words)
               for W in fullest if config.format.weights_violation(config, W) is None
               for order in _order_options(config))


def _fits(config: Config) -> bool:
    """Every case of `config` fits the harness's smallest memory bucket."""
    return (config.cols <= MAX_COLS and MAX_VECTORS * config.x_beats <= BUCKET
            and group_beats(config) <= BUCKET)


def max_rows(config: Config) -> int:
    """Rows a case of `config` may have: :data:`MAX_ROWS`, or fewer where the w frame would
    outgrow the smallest memory bucket or the engine holds fewer (``derived.max_rows`` of
    its description: the cbs accumulators hold ``cols`` rows, DESIGN §9.4)."""
    engine_rows = describe(config)["derived"].get("max_rows", MAX_ROWS)
    return max(1, min(MAX_ROWS, engine_rows, config.pes * (BUCKET // group_beats(config))))


def draw_pool(seed: int, size: int, engines) -> list[Config]:
    """The configuration pool: slot ``i`` is drawn from ``(seed, i)`` for engine
    ``engines[i % len(engines)]`` (names of :data:`~bbsparse.hdl.engines.ENGINES`)."""
    engines = tuple(engines)
    pool = []
    for slot in range(size):
        engine = engines[slot % len(engines)]
        rng = np.random.default_rng([seed, _POOL_STREAM, slot])
        for _ in range(10_000):
            try:
                config = Config(pattern=engine, **_draw_parameters(rng))
            except ConfigError:
                continue  # a rule of DESIGN §2 or of the engine (§9): draw again
            if _fits(config):
                pool.append(_finish(rng, config))
                break
        else:
            raise ValueError(f"no configuration for engine {engine!r} found in slot {slot}")
    return pool


@dataclass(frozen=True)
class Plan:
    """Everything a case depends on besides its index."""

    seed: int
    configs: int = DEFAULT_CONFIGS
    engines: tuple[str, ...] = tuple(ENGINES)

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {self.seed!r}")
        if isinstance(self.configs, bool) or not isinstance(self.configs, int) \
                or self.configs < 1:
            raise ValueError(f"configs must be a positive integer, not {self.configs!r}")
        unknown = [name for name in self.engines if name not in ENGINES]
        if not self.engines or unknown:
            raise ValueError(f"engines must be names of {', '.join(ENGINES)}, not "
                             f"{', '.join(self.engines) or 'none'}")
        object.__setattr__(self, "engines", tuple(self.engines))

    @functools.cached_property
    def pool(self) -> list[Config]:
        return draw_pool(self.seed, self.configs, self.engines)

    def config_index(self, index: int) -> int:
        """The pool slot case `index` runs on (the first draw of the case)."""
        return int(self._case_rng(index).integers(self.configs))

    def _case_rng(self, index: int):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"a case index must be a non-negative integer, not {index!r}")
        return np.random.default_rng([self.seed, _CASE_STREAM, index])

    def replay(self, index: int) -> str:
        """The command that runs case `index` alone."""
        command = f"bbsparse verify --seed {self.seed} --case {index}"
        if self.configs != DEFAULT_CONFIGS:
            command += f" --configs {self.configs}"
        if self.engines != tuple(ENGINES):
            command += f" --engines {','.join(self.engines)}"
        return command


# -- one case --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Case:
    """One SpMV on one configuration, with its stalls: all of it drawn from (seed, index)."""

    plan: Plan
    index: int
    config_index: int
    config: Config
    W: np.ndarray
    #: ``(cols_w,)`` for a single vector given as such, else ``(vectors, cols_w)``.
    X: np.ndarray
    #: How W was made: a pruner's description or ``mask``, and what was zeroed after.
    matrix: str
    #: The harness's stream order, for an engine whose packer has one.
    order: str | None
    stalls: Stalls
    sim_seed: int

    @property
    def vectors(self) -> int:
        return 1 if self.X.ndim == 1 else self.X.shape[0]

    @property
    def stall_free(self) -> bool:
        return self.stalls == Stalls()

    def options(self) -> dict:
        return {} if self.order is None else {"order": self.order}

    def describe(self) -> str:
        rows, cols = self.W.shape
        stalls = ("none" if self.stall_free else
                  f"x_idle {self.stalls.x_idle}, w_idle {self.stalls.w_idle}, "
                  f"y_stall {self.stalls.y_stall}, y_burst {self.stalls.y_burst}")
        order = "" if self.order is None else f", order {self.order}"
        shape = "one vector" if self.X.ndim == 1 else f"{self.vectors} vectors"
        return (f"case {self.index}: configuration {self.config_index} "
                f"({config_text(self.config)}); W {rows}x{cols} ({self.matrix}), {shape}"
                f"{order}; stalls {stalls}, sim seed {self.sim_seed}")


def config_text(config: Config) -> str:
    return " ".join(f"{name}={value}" for name, value in config.to_dict().items())


def _signed_range(width: int) -> tuple[int, int]:
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def _values(rng, shape, width: int) -> np.ndarray:
    """Signed values of `width` bits: uniform, the extremes, or near zero."""
    lo, hi = _signed_range(width)
    style = rng.random()
    if style < 0.6:
        return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    if style < 0.85:
        edges = np.unique([lo, lo + 1, -1, 0, 1, hi - 1, hi])
        return rng.choice(edges, size=shape).astype(np.int64)
    return rng.integers(max(lo, -2), min(hi, 2) + 1, size=shape, dtype=np.int64)


def _candidates(rng, config: Config, shape: tuple[int, int]):
    """(description, matrix function) of every pruner and a random mask, in random order."""
    rows, cols = shape
    nnz_per_bank = config.nnz_per_bank if rng.random() < 0.75 \
        else int(rng.integers(1, config.nnz_per_bank + 1))
    drawn = {"bank_size": config.bank_size, "nnz_per_bank": nnz_per_bank,
             "nnz": int(rng.integers(0, rows * cols + 1)) if rng.random() < 0.7 else None,
             "block": int(rng.integers(1, 9)), "blocks": None}
    density = float(rng.random())
    mask = rng.random(shape) < density
    candidates = []
    for pruner in PRUNERS.values():
        options = {name: None for name in OPTIONS}
        for name in ("bank_size", "nnz_per_bank", *pruner.own_options):
            options[name] = drawn.get(name)
        candidates.append((pruner, options))
    candidates.append((None, density))
    order = rng.permutation(len(candidates))
    for i in order:
        pruner, options = candidates[i]
        if pruner is None:
            yield f"random mask, density {density:.2f}", lambda dense: np.where(mask, dense, 0)
            continue
        try:
            params, text = pruner.resolve(options, shape)
        except PruneOptionError:
            continue  # options this pruner cannot take for this shape
        yield text, functools.partial(pruner, **params)


def _first_accepted(config: Config, dense: np.ndarray, candidates) -> tuple[np.ndarray, str]:
    """The first candidate's matrix that the engine's format accepts, and its description."""
    for text, make in candidates:
        W = np.asarray(make(dense), dtype=np.int64)
        if config.format.weights_violation(config, W) is None:
            return W, text
    raise ValueError(f"no pruner of PRUNERS gives a {dense.shape[0]}x{dense.shape[1]} matrix "
                     f"that engine {config.pattern!r} accepts: add one")


def _draw_matrix(rng, config: Config, rows: int, cols: int) -> tuple[np.ndarray, str]:
    dense = _values(rng, (rows, cols), config.weight_width)
    lo, hi = _signed_range(config.weight_width)
    if rng.random() < 0.3:
        dense[0] = lo  # every product and sum at its most negative
        if rows > 1:
            dense[1] = hi
    W, text = _first_accepted(config, dense, _candidates(rng, config, (rows, cols)))
    u = rng.random()
    if u < 0.15:
        W[rng.random(rows) < 0.3] = 0
        text += ", some rows zeroed"
    elif u < 0.25:
        W[rng.random((rows, cols)) < rng.random()] = 0
        text += ", some weights zeroed"
    elif u < 0.27:
        W[:] = 0
        text += ", all zeroed"
    # Zeroing keeps every pattern the engines have; the check keeps that an invariant.
    assert config.format.weights_violation(config, W) is None, text
    return W, text


def _probability(rng) -> float:
    return 0.0 if rng.random() < 0.25 else round(float(rng.uniform(0.0, 0.8)), 3)


def draw_case(plan: Plan, index: int) -> Case:
    """Case `index` of `plan`: the same for every number of cases and jobs."""
    rng = plan._case_rng(index)
    config_index = int(rng.integers(plan.configs))  # first, as Plan.config_index draws it
    config = plan.pool[config_index]
    limit = max_rows(config)
    u = rng.random()
    if u < 0.15:
        rows = int(rng.integers(1, min(limit, config.pes) + 1))
    elif u < 0.5:
        rows = int(math.exp(rng.uniform(0.0, math.log(limit + 1))))
    else:
        rows = int(rng.integers(1, limit + 1))
    rows = max(1, min(rows, limit))
    vectors = int(rng.integers(1, MAX_VECTORS + 1))
    cols = config.cols
    if rng.random() < 0.2:  # a shorter matrix: the core pads it
        cols = config.bank_size * int(rng.integers(1, config.banks_per_row + 1))
    W, matrix = _draw_matrix(rng, config, rows, cols)
    X = _values(rng, (vectors, cols), config.act_width)
    if rng.random() < 0.3:
        X[0] = _signed_range(config.act_width)[0]
    if vectors == 1 and rng.random() < 0.5:
        X = X[0]
    order = _order_options(config)[int(rng.integers(len(_order_options(config))))]
    if rng.random() < 0.3:
        stalls = Stalls()  # where the exact cycle counts are claimed
    else:
        burst = 0.0 if rng.random() < 0.5 else round(float(rng.uniform(0.0, 0.05)), 3)
        stalls = Stalls(x_idle=_probability(rng), w_idle=_probability(rng),
                        y_stall=_probability(rng), y_burst=burst)
    sim_seed = int(rng.integers(1, 1 << 32))
    return Case(plan, index, config_index, config, W, X, matrix, order, stalls, sim_seed)


# -- checking ---------------------------------------------------------------------------------


def expected_y(case: Case) -> np.ndarray:
    """What the core must return: the golden model."""
    return golden.spmv(case.config, case.W, case.X)


def _frame_cycles(case: Case, report: dict) -> int:
    """Cycles of one w frame by the engine's golden model."""
    if "predicted_cycles" in report:
        packed = case.config.format.pack(case.config, case.W, np.atleast_2d(case.X),
                                         **case.options())
        return packed.stream_cycles
    return report["ideal_steady_cycles"] // case.vectors


def exact_cycles_claimed(case: Case, report: dict) -> bool:
    """Whether the project claims this run takes exactly its model's cycles plus the
    pipeline latency (DESIGN §14.4), in the regimes its tests check:

    - an engine with fixed-length rows (tests/test_rtl_spmv.py): no stall, and at least
      ``ceil(x_beats / cycles_per_row) + 1`` row groups, so that a matrix lasts longer than
      loading the next x; any batch;
    - an engine with its own cycle model (tests/test_rtl_unstructured.py): no stall, at most
      two vectors, and a w frame at least as long as an x frame.
    """
    if not case.stall_free:
        return False
    config = case.config
    if config.format.fixed_row_length:
        groups = config.row_groups(case.W.shape[0])
        return groups >= -(-config.x_beats // config.cycles_per_row) + 1
    return case.vectors <= 2 and _frame_cycles(case, report) >= config.x_beats


def check_case(case: Case, y: np.ndarray, report: dict) -> tuple[list[str], list[str]]:
    """(problems, notes) of a run: a problem fails the case, a note is an observation."""
    problems, notes = [], []
    expected = expected_y(case)
    if y.shape != expected.shape:
        problems.append(f"y has shape {y.shape}, the golden model {expected.shape}")
    else:
        differ = np.argwhere(np.atleast_2d(y) != np.atleast_2d(expected))
        if differ.size:
            vector, row = (int(i) for i in differ[0])
            problems.append(
                f"{len(differ)} of {expected.size} results differ; first: vector {vector}, "
                f"row {row}: RTL {np.atleast_2d(y)[vector, row]}, golden "
                f"{np.atleast_2d(expected)[vector, row]}")
    if report["error"]:
        problems.append("the error output rose")
    if not report["y_tlast_ok"]:
        problems.append("y tlast is not on exactly the last beat of each vector")
    latency = report["pipeline_latency"]
    model = report.get("predicted_cycles", report["ideal_cycles"])
    cycles = report["cycles"]
    if cycles < model + latency:
        problems.append(f"{cycles} cycles, fewer than the model's {model} + latency {latency} "
                        f"(DESIGN §7.1: never less)")
    if exact_cycles_claimed(case, report):
        steady = report.get("predicted_steady_cycles", report["ideal_steady_cycles"])
        if cycles != model + latency:
            problems.append(f"{cycles} cycles without stalls, not the claimed {model} + "
                            f"latency {latency} (DESIGN §14.4)")
        if report["steady_cycles"] != steady:
            problems.append(f"{report['steady_cycles']} steady cycles without stalls, not "
                            f"the claimed {steady} (DESIGN §14.4)")
        if "crossbar_stall_cycles" in report:
            frame = _frame_cycles(case, report)
            model_stalls = case.vectors * (frame - report["ideal_steady_cycles"]
                                           // case.vectors)
            if report["crossbar_stall_cycles"] != model_stalls:
                problems.append(f"{report['crossbar_stall_cycles']} crossbar stall cycles, "
                                f"the model {model_stalls} (DESIGN §14.4)")
    elif case.stall_free and cycles != model + latency:
        notes.append(f"{cycles} cycles without stalls = model {model} + latency {latency} + "
                     f"{cycles - model - latency}, outside the claimed regime "
                     f"(frame {_frame_cycles(case, report)} cycles, x frame "
                     f"{case.config.x_beats} beats, {case.vectors} vectors)")
    return problems, notes


# -- running -----------------------------------------------------------------------------------


@dataclass
class CaseResult:
    index: int
    config_index: int
    engine: str
    problems: list[str]
    notes: list[str]
    replay: str
    description: str
    cycles: int = 0
    claim_checked: bool = False
    stall_free: bool = False
    vectors: int = 0
    rows: int = 0
    order: str | None = None
    matrix: str = ""
    sim_seconds: float = 0.0
    #: :func:`verilog_digest` of the core the case ran on.
    verilog: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def failure_text(self) -> str:
        return (f"FAIL {self.description}\n" + "".join(f"  - {p}\n" for p in self.problems)
                + f"  replay: {self.replay}")


@contextlib.contextmanager
def known_verilog(texts: dict):
    """Let the harness use Verilog texts made elsewhere (in the soak's elaboration workers),
    so every worker builds and runs the one text the soak fingerprints. Inside this block a
    text is taken from `texts` (a dict the caller may pre-fill), or made and kept there."""
    original = harness.verilog_text

    def verilog_text(config):
        text = texts.get(config)
        if text is None:
            text = texts[config] = original(config)
        return text

    harness.verilog_text = verilog_text
    try:
        yield texts
    finally:
        harness.verilog_text = original


def _quiet(message: str) -> None:
    pass


def run_case(case: Case, *, waves=None, workdir=None, log=_quiet) -> CaseResult:
    """Run `case` on the RTL and check it. The harness's own failures (a simulation that
    stops, hangs or does not build) are problems of the case too."""
    result = CaseResult(case.index, case.config_index, case.config.pattern, [], [],
                        case.plan.replay(case.index), case.describe(),
                        stall_free=case.stall_free, vectors=case.vectors,
                        rows=case.W.shape[0], order=case.order, matrix=case.matrix)
    try:
        sim = harness.run_spmv(case.config, case.W, case.X, seed=case.sim_seed,
                               stalls=case.stalls, waves=waves, workdir=workdir,
                               log=log, **case.options())
    except (RuntimeError, OSError) as exc:
        result.problems.append(f"the harness failed: {exc}")
        return result
    result.problems, result.notes = check_case(case, sim.y, sim.report)
    result.cycles = sim.report["cycles"]
    result.sim_seconds = sim.report["sim_seconds"]
    result.claim_checked = exact_cycles_claimed(case, sim.report)
    return result


def _elaborate(plan: Plan, config_index: int) -> tuple[int, str | None, float, str | None]:
    """The Verilog of configuration `config_index`: (index, text, seconds, error)."""
    start = time.monotonic()
    try:
        text = harness.verilog_text(plan.pool[config_index])
    except Exception as exc:  # noqa: BLE001 - a configuration that fails fails its cases
        return config_index, None, time.monotonic() - start, f"{type(exc).__name__}: {exc}"
    return config_index, text, time.monotonic() - start, None


def _build(plan: Plan, config_index: int, text: str) -> tuple[int, float, str | None]:
    """Build the simulator of configuration `config_index`: (index, seconds, error)."""
    config = plan.pool[config_index]
    start = time.monotonic()
    try:
        with known_verilog({config: text}):
            harness.build_simulator(config, 1, 1, 1, log=_quiet)
    except Exception as exc:  # noqa: BLE001 - a build failure fails its cases, not the soak
        return config_index, time.monotonic() - start, f"{type(exc).__name__}: {exc}"
    return config_index, time.monotonic() - start, None


def verilog_digest(text: str) -> str:
    """A short fingerprint of a core's Verilog: a replay on other RTL shows another one."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_chunk(plan: Plan, config_index: int, text: str, indices: list[int]) -> list[CaseResult]:
    config = plan.pool[config_index]
    with known_verilog({config: text}):
        results = [run_case(draw_case(plan, index)) for index in indices]
    for result in results:
        result.verilog = verilog_digest(text)
    return results


def _failed_build(plan: Plan, index: int, error: str) -> CaseResult:
    case = draw_case(plan, index)
    return CaseResult(index, case.config_index, case.config.pattern,
                      [f"configuration {case.config_index} did not build: {error}"], [],
                      plan.replay(index), case.describe())


@dataclass
class Summary:
    plan: Plan
    cases: int
    jobs: int
    results: list[CaseResult] = field(default_factory=list)
    build_seconds: dict[int, float] = field(default_factory=dict)
    build_errors: dict[int, str] = field(default_factory=dict)
    #: :func:`verilog_digest` of every configuration that elaborated.
    verilog: dict[int, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    build_wall_seconds: float = 0.0
    run_wall_seconds: float = 0.0

    @property
    def failures(self) -> list[CaseResult]:
        return sorted((r for r in self.results if not r.ok), key=lambda r: r.index)

    @property
    def noted(self) -> list[CaseResult]:
        return sorted((r for r in self.results if r.notes), key=lambda r: r.index)

    @property
    def cases_per_minute(self) -> float:
        return 60 * len(self.results) / self.wall_seconds if self.wall_seconds else 0.0

    def final_line(self) -> str:
        return (f"verify: {len(self.results)} cases, {len(self.failures)} failures, "
                f"{self.wall_seconds:.1f} s, {self.cases_per_minute:.0f} cases/min, "
                f"seed {self.plan.seed}")

    def coverage(self) -> dict:
        results = self.results
        return {
            "engines": dict(Counter(r.engine for r in results)),
            "stall_free": sum(r.stall_free for r in results),
            "exact_cycles_checked": sum(r.claim_checked for r in results),
            "vectors": {str(k): v for k, v in sorted(Counter(r.vectors for r in results)
                                                      .items())},
            "orders": {str(k): v for k, v in Counter(r.order for r in results).items()},
            "matrices": dict(Counter(r.matrix.split(",")[0].split(" ")[0]
                                     for r in results)),
            "rows": [min((r.rows for r in results), default=0),
                     max((r.rows for r in results), default=0)],
            "configurations_used": len({r.config_index for r in results}),
        }

    def to_json(self) -> dict:
        used = Counter(r.config_index for r in self.results)
        return {
            "seed": self.plan.seed,
            "configs": self.plan.configs,
            "engines": list(self.plan.engines),
            "cases": len(self.results),
            "failures": len(self.failures),
            "notes": len(self.noted),
            "wall_seconds": round(self.wall_seconds, 2),
            "build_wall_seconds": round(self.build_wall_seconds, 2),
            "run_wall_seconds": round(self.run_wall_seconds, 2),
            "cases_per_minute": round(self.cases_per_minute, 1),
            "cases_per_minute_running": round(
                60 * len(self.results) / self.run_wall_seconds if self.run_wall_seconds else 0, 1),
            "jobs": self.jobs,
            "replay": self.plan.replay(0).replace("--case 0", "--case K"),
            "coverage": self.coverage(),
            "failed_cases": [dataclasses.asdict(r) for r in self.failures],
            "noted_cases": [dataclasses.asdict(r) for r in self.noted[:200]],
            "configurations": [
                {"index": i, "parameters": c.to_dict(), "cases": used.get(i, 0),
                 "build_seconds": round(self.build_seconds.get(i, 0.0), 2),
                 "verilog": self.verilog.get(i),
                 "build_error": self.build_errors.get(i)}
                for i, c in enumerate(self.plan.pool)],
        }


def pool_text(pool: list[Config]) -> str:
    """What a pool covers, in one line."""
    engines = Counter(c.pattern for c in pool)
    lanes = sorted({c.lanes for c in pool})
    widths = sorted({w for c in pool for w in (c.weight_width, c.act_width)})
    dense = sum(c.nnz_per_bank == c.bank_size for c in pool)
    ragged = sum(c.cols % (c.lanes * c.bank_size) != 0 for c in pool)
    odd = sum(c.lanes & (c.lanes - 1) != 0 for c in pool)
    return (f"{len(pool)} configurations ("
            + ", ".join(f"{n} {name}" for name, n in engines.items())
            + f"): lanes {','.join(map(str, lanes))} ({odd} not a power of two), pes "
            f"{min(c.pes for c in pool)}-{max(c.pes for c in pool)}, widths "
            f"{widths[0]}-{widths[-1]}, {dense} dense, "
            f"{sum(c.nnz_per_bank == 1 for c in pool)} with one nonzero a bank, {ragged} with "
            f"cols not a multiple of lanes*bank_size, "
            f"{sum(c.acc_width < c.default_acc_width for c in pool)} wrapping, "
            f"{sum(c.out_width < c.acc_width for c in pool)} saturating, "
            f"{sum(c.out_shift > 0 for c in pool)} shifting, {sum(c.relu for c in pool)} relu, "
            f"tree levels per stage "
            f"{','.join(map(str, sorted({c.tree_levels_per_stage for c in pool})))}, "
            f"multipliers up to {max(c.multipliers for c in pool)}, acc up to "
            f"{max(c.acc_width for c in pool)} bits")


def _minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s"


def _drain(executor, function, calls, on_result, on_tick) -> None:
    """Run ``function(*args)`` for every `args` of `calls` (on `executor`, or here if it is
    None), giving each result to `on_result` as it comes and calling `on_tick` between."""
    if executor is None:
        for args in calls:
            on_result(function(*args))
            on_tick()
        return
    pending = {executor.submit(function, *args) for args in calls}
    while pending:
        finished, pending = concurrent.futures.wait(
            pending, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
            on_result(future.result())
        on_tick()


def _executor(jobs: int):
    if jobs == 1:
        return contextlib.nullcontext()
    # fork: a worker starts in milliseconds with the pool already drawn, and it needs no
    # importable __main__ (spawn would re-run a caller's script).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context)


def run_soak(plan: Plan, cases: int, *, jobs: int | None = None, log=print,
             progress_seconds: float = 10.0) -> Summary:
    """Run cases ``0 .. cases-1`` of `plan` on `jobs` processes (default: every core; 1
    runs in this process). `log` gets the progress lines, each failure as it is found and
    the final line.

    Every configuration's Verilog is generated first, all at once (so that one soak runs
    one version of the RTL even while the sources change), then built, then the cases run
    in chunks of one configuration."""
    jobs = jobs or os.cpu_count() or 1
    summary = Summary(plan, cases, jobs)
    start = time.monotonic()
    by_config: dict[int, list[int]] = {}
    for index in range(cases):
        by_config.setdefault(plan.config_index(index), []).append(index)
    # The largest designs first, so that the last builds do not run alone.
    order = sorted(by_config, key=lambda i: -plan.pool[i].multipliers)
    log(f"verify: seed {plan.seed}, {cases} cases, {jobs} jobs; pool: {pool_text(plan.pool)}")
    texts: dict[int, str] = {}
    counts = Counter()
    last = start

    def tick(text) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= progress_seconds:
            last = now
            log(f"verify: {text()} ({_minutes(now - start)} elapsed)")

    def elaborated(outcome) -> None:
        index, text, seconds, error = outcome
        summary.build_seconds[index] = seconds
        if error is None:
            texts[index] = text
            summary.verilog[index] = verilog_digest(text)
        else:
            summary.build_errors[index] = error
            log(f"verify: configuration {index} did not elaborate: {error}")

    def built(outcome) -> None:
        index, seconds, error = outcome
        counts["built"] += 1
        summary.build_seconds[index] += seconds
        if error is not None:
            summary.build_errors[index] = error
            del texts[index]
            log(f"verify: configuration {index} did not build: {error}")

    def record(results: list[CaseResult]) -> None:
        for result in results:
            summary.results.append(result)
            if not result.ok:
                counts["failed"] += 1
                log(result.failure_text())

    def progress() -> str:
        done = len(summary.results)
        seconds = time.monotonic() - run_start
        rate = 60 * done / seconds if seconds > 0 and done else 0.0
        eta = _minutes((cases - done) / rate * 60) if rate else "?"
        return (f"{done}/{cases} cases, {counts['failed']} failures, {rate:.0f} cases/min, "
                f"ETA {eta}")

    with _executor(jobs) as workers:
        executor = None if jobs == 1 else workers
        log(f"verify: generating the Verilog of {len(by_config)} configurations ...")
        _drain(executor, _elaborate, [(plan, i) for i in order], elaborated,
               lambda: tick(lambda: f"generated {len(summary.build_seconds)}/{len(by_config)}"))
        log(f"verify: building {len(texts)} configurations ...")
        _drain(executor, _build, [(plan, i, texts[i]) for i in order if i in texts], built,
               lambda: tick(lambda: f"built {counts['built']}/{len(by_config)} configurations"))
        summary.build_wall_seconds = time.monotonic() - start
        log(f"verify: {len(texts)} configurations ready in {summary.build_wall_seconds:.1f} s;"
            f" running {cases} cases ...")
        run_start = time.monotonic()
        chunks = []
        for index, indices in by_config.items():
            if index not in texts:
                record([_failed_build(plan, i, summary.build_errors[index]) for i in indices])
                continue
            chunks += [(plan, index, texts[index], indices[c:c + CHUNK])
                       for c in range(0, len(indices), CHUNK)]
        chunks.sort(key=lambda chunk: chunk[3][0])
        _drain(executor, _run_chunk, chunks, record, lambda: tick(progress))
    summary.results.sort(key=lambda r: r.index)
    summary.wall_seconds = time.monotonic() - start
    summary.run_wall_seconds = time.monotonic() - run_start
    if summary.noted:
        first = summary.noted[0]
        log(f"verify: {len(summary.noted)} stall-free cases outside the claimed regime took "
            f"other than the model's cycles + latency (notes, not failures); first: "
            f"{first.notes[0]}; {first.replay}")
    log(summary.final_line())
    return summary


def replay(plan: Plan, index: int, *, waves=None, log=print) -> CaseResult:
    """Run case `index` alone (in this process), optionally writing a VCD."""
    case = draw_case(plan, index)
    log(case.describe())
    text = harness.core_verilog(case.config)
    with known_verilog({case.config: text}):
        result = run_case(case, waves=waves, log=log)
    result.verilog = verilog_digest(text)
    log(f"case {index}: core Verilog {result.verilog} (a soak's JSON lists each "
        f"configuration's)")
    if result.ok:
        log(f"case {index}: ok, {result.cycles} cycles"
            + "".join(f"\n  note: {note}" for note in result.notes))
    else:
        log(result.failure_text())
    return result
