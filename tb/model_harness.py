"""Run a whole compiled model (`bbs_model`) under Verilator, with no Python in the clock loop.

`run_model` packs the batch's x frames with the golden packer (layer 0's configuration),
builds (once per model) the :mod:`~bbsparse.tb.sim_top` wrapper without a w port around the
model's RTL (the weights are inside, as memory contents), runs it and unpacks y. The
returned y comes from the RTL only; comparing it with ``model.forward`` is the caller's
business.

One build serves every batch: the wrapper's memories hold :data:`CHUNK_VECTORS` vectors
(rounded up to a power of two), and a larger batch runs as several chunks, each a full run
from reset, whose cycles add up.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..golden import csb
from ..golden.arith import as_integers, check_signed
from ..golden.model import IntegerModel
from ..hdl.generate import MODEL_TOP_NAME, describe_model, model_verilog_text
from .harness import (
    HANG_CYCLES,
    SimulationError,
    Stalls,
    _bucket,
    _write_hex,
    build_telling_cache,
    read_hex,
    run_wrapper,
)
from .sim_top import SIM_MAIN_CPP, SIM_TOP, sim_top_verilog
from .verilator import verilator_build

__all__ = ["CHUNK_VECTORS", "MODEL_SIM_TOP", "ModelRun", "build_model_simulator",
           "model_fingerprint", "run_model"]

MODEL_SIM_TOP = "bbs_model_sim"

#: Vectors in one simulator run: the wrapper's x and y memories are sized for this many, and
#: a larger batch runs in chunks of it (progress is reported after each).
CHUNK_VECTORS = 1024

_NO_STALLS = Stalls()


@dataclass
class ModelRun:
    """y ``(batch, model.outputs)`` (``(outputs,)`` for one vector), int64, from the RTL
    only; and the figures of the run (:func:`run_model`)."""
    y: np.ndarray
    report: dict


def model_fingerprint(model: IntegerModel) -> str:
    """A digest of everything that makes the model's RTL: the core, the layers' weights,
    biases, shifts and ReLUs, and the widths."""
    digest = hashlib.sha256()
    digest.update(repr((model.config.to_dict(), model.out_width, model.bias_width)).encode())
    for layer in model.layers:
        for array in (layer.weights, layer.bias):
            array = np.asarray(array, dtype=np.int64)
            digest.update(repr(array.shape).encode() + array.tobytes())
        digest.update(repr((layer.out_shift, layer.relu, layer.name)).encode())
    return digest.hexdigest()


# The model's Verilog by fingerprint: making it (seconds of Amaranth) costs more than most
# runs, and a test or a bench runs one model many times.
_VERILOG: dict[str, str] = {}
_VERILOG_KEEP = 16


def _model_verilog(model: IntegerModel) -> str:
    key = model_fingerprint(model)
    if key not in _VERILOG:
        if len(_VERILOG) >= _VERILOG_KEEP:
            _VERILOG.pop(next(iter(_VERILOG)))
        _VERILOG[key] = model_verilog_text(model)
    return _VERILOG[key]


def _y_beats(model: IntegerModel) -> int:
    """y beats per inference: the last layer's row groups."""
    return model.layer_config(len(model.layers) - 1).row_groups(model.outputs)


def _y_beat_width(model: IntegerModel) -> int:
    return model.config.pes * model.out_width


def _build(model: IntegerModel, waves: bool, log) -> tuple[Path, bool]:
    """The simulator's folder, and whether it came from the cache."""
    first = model.layer_config(0)
    depths = dict(x_depth=_bucket(CHUNK_VECTORS * first.x_beats), w_depth=0,
                  y_depth=_bucket(CHUNK_VECTORS * _y_beats(model)))
    sources = {
        f"{MODEL_TOP_NAME}.v": _model_verilog(model),
        f"{MODEL_SIM_TOP}.v": sim_top_verilog(
            model.config, **depths, core=MODEL_TOP_NAME, name=MODEL_SIM_TOP,
            x_beats=first.x_beats, y_beat_width=_y_beat_width(model), w_port=False),
    }
    sizes = " -> ".join(str(n) for n in (model.inputs, *(layer.rows for layer in model.layers)))
    return build_telling_cache(
        lambda note: verilator_build(
            "model-sim", sources, MODEL_SIM_TOP,
            cpp_main=SIM_MAIN_CPP.replace(SIM_TOP, MODEL_SIM_TOP), waves=waves,
            flags=["--x-assign", "0", "--x-initial", "0"], log=note,
            what=f"a {len(model.layers)}-layer model ({sizes})"), log)


def build_model_simulator(model: IntegerModel, *, waves: bool = False, log=None) -> Path:
    """Build (or reuse) the simulator of `model` (any batch size); return its folder."""
    return _build(model, waves, log)[0]


def _simulate(folder: Path, x_words: list[int], x_width: int, *, vectors: int, y_beats: int,
              hang_cycles: int, seed: int, stalls: Stalls, waves, max_cycles,
              workdir) -> tuple[dict, list[int], float]:
    """One run of the wrapper: its figures, the y words ({tlast, tdata}) and wall time."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        _write_hex(tmp / "x.hex", x_words, x_width)
        figures, wall = run_wrapper(
            folder, [f"+XFILE={tmp / 'x.hex'}", f"+YFILE={tmp / 'y.hex'}",
                     f"+VECTORS={vectors}", f"+YBEATS={y_beats}", f"+SEED={seed & 0xFFFFFFFF}",
                     *stalls.plusargs(), f"+HANG_CYCLES={hang_cycles}"],
            max_cycles=max_cycles, waves=waves)
        if not figures["done"]:
            where = (f"after {figures['sim_cycles']} cycles: {figures['y_received']} of "
                     f"{y_beats} y beats received, {figures['x_sent']} x beats sent, "
                     f"error={figures['error']}, seed {seed}")
            if figures["hang"]:
                raise SimulationError(
                    f"the model hangs: no transfer in {hang_cycles} cycles in which y was "
                    f"ready and x offered a beat, {where}")
            raise SimulationError(f"the simulation stopped at its limit of {max_cycles} "
                                  f"cycles, {where}")
        y_words = read_hex(tmp / "y.hex")
    return figures, y_words, wall


def run_model(model: IntegerModel, X, *, seed: int = 1, stalls: Stalls = _NO_STALLS,
              waves: str | Path | None = None, max_cycles: int | None = None,
              workdir: str | Path | None = None, log=None, progress=None) -> ModelRun:
    """Run `model` on the integer inputs `X` ``(batch, model.inputs)`` (or ``(inputs,)``,
    giving y ``(outputs,)``), already quantized to ``act_width``, on its RTL.

    The x frames stream in with random idle beats (``stalls.x_idle``) and y leaves under
    random back-pressure (``stalls.y_stall``, ``stalls.y_burst``); the w fields of `stalls`
    have no port to act on. A batch of more than :data:`CHUNK_VECTORS` vectors runs in
    chunks, each from reset with seed ``seed + i``; `progress` (if given) is called as
    ``progress(done_vectors, batch)`` at the start and after each chunk. `max_cycles`
    limits each chunk; `waves` (a .vcd path) needs a batch that is one chunk.

    The report: ``cycles`` (first x beat accepted to last y beat, inclusive; summed over
    chunks), ``cycles_per_inference`` (vector 0 alone: its first x beat to the y beat with
    its ``tlast``, inclusive; with stalls, they count), ``cycles_per_inference_batch``
    (cycles / batch) and ``inferences_per_cycle``, ``ideal_cycles`` (one inference: the sum
    over layers of x beats + w beats) and ``fill_cycles`` (cycles_per_inference minus
    ideal), ``error`` (the core's sticky error seen), ``y_tlast_ok``, the wait cycles of x
    and y, ``simulated_cycles``, ``sim_seconds``, ``sim_cycles_per_second``,
    ``verilator_build_seconds`` (0.0 from the cache), ``cached``, ``seed``.
    SimulationError if a run does not finish (a hang: :data:`~.harness.HANG_CYCLES`, plus
    the ideal cycles of one inference, without a transfer while everything is offered).
    """
    if not isinstance(model, IntegerModel):
        raise TypeError(f"model must be an IntegerModel, not {model!r}")
    c = model.config
    X = as_integers(X, "X")
    single = X.ndim == 1
    batch = X[None, :] if single else X
    if batch.ndim != 2 or batch.shape[1] != model.inputs or batch.shape[0] == 0:
        raise ValueError(f"X must have shape ({model.inputs},) or (batch, {model.inputs}) "
                         f"with batch >= 1, not {X.shape}")
    check_signed(batch, c.act_width, "X", "act_width")
    vectors = batch.shape[0]
    if waves is not None and vectors > CHUNK_VECTORS:
        raise ValueError(f"waveforms need a batch of at most {CHUNK_VECTORS} vectors (one "
                         f"run), not {vectors}")
    stalls.plusargs()  # checks the probabilities before anything is built

    first = model.layer_config(0)
    groups = _y_beats(model)
    y_width = _y_beat_width(model)
    padded = np.pad(batch, ((0, 0), (0, first.cols - model.inputs)))
    layers = describe_model(model)["model"]["layers"]
    ideal = sum(layer["x_beats"] + layer["w_beats"] for layer in layers)
    # The wrapper sees only the model's outer streams: while the hidden layers run, nothing
    # moves on them for up to about one inference's work, which the watchdog must allow.
    hang_cycles = HANG_CYCLES + ideal
    folder, cached = _build(model, waves is not None, log)
    build_seconds = 0.0 if cached else float((folder / "build_seconds").read_text())

    if progress is not None:
        progress(0, vectors)
    totals = dict(cycles=0, x_wait=0, y_wait=0, sim_cycles=0, error=0)
    wall = 0.0
    y_words: list[int] = []
    cycles_per_inference = None
    for i, start in enumerate(range(0, vectors, CHUNK_VECTORS)):
        chunk = padded[start:start + CHUNK_VECTORS]
        x_words = csb.x_beat_ints(first, csb.pack_x(first, chunk))
        figures, words, seconds = _simulate(
            folder, x_words, c.x_beat_width, vectors=len(chunk), y_beats=len(chunk) * groups,
            hang_cycles=hang_cycles, seed=seed + i, stalls=stalls, waves=waves,
            max_cycles=max_cycles, workdir=workdir)
        if cycles_per_inference is None:
            cycles_per_inference = figures["first_last_y"] - figures["first_x"] + 1
        for key in totals:
            totals[key] += figures[key]
        wall += seconds
        y_words += words
        if progress is not None:
            progress(start + len(chunk), vectors)

    mask = (1 << y_width) - 1
    fields = csb.unpack_fields([word & mask for word in y_words], c.pes, model.out_width,
                               signed=True)
    Y = fields.reshape(vectors, groups * c.pes)[:, :model.outputs]
    if model.out_width <= 64:  # else Python ints (an object array), as unpack_fields gives
        Y = Y.astype(np.int64)
    tlasts = [word >> y_width for word in y_words]
    expected_tlast = [int((k + 1) % groups == 0) for k in range(vectors * groups)]

    cycles = totals["cycles"]
    report = {
        "vectors": vectors,
        "layers": len(layers),
        "cycles": cycles,
        "cycles_per_inference": cycles_per_inference,
        "cycles_per_inference_batch": cycles / vectors,
        "inferences_per_cycle": vectors / cycles,
        "ideal_cycles": ideal,
        "fill_cycles": cycles_per_inference - ideal,
        "chunks": -(-vectors // CHUNK_VECTORS),
        "x_wait_cycles": totals["x_wait"],
        "y_wait_cycles": totals["y_wait"],
        "error": bool(totals["error"]),
        "y_tlast_ok": tlasts == expected_tlast,
        "simulated_cycles": totals["sim_cycles"],
        "sim_seconds": wall,
        "sim_cycles_per_second": totals["sim_cycles"] / wall if wall > 0 else float("inf"),
        "verilator_build_seconds": build_seconds,
        "cached": cached,
        "seed": seed,
    }
    return ModelRun(y=Y[0] if single else Y, report=report)
