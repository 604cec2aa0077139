"""cocotb testbench of a model board top `bbs_board` (:class:`bbsparse.hdl.board.
ModelBoardTop`: UART, host link, a whole compiled model with its weights in ROM): the
serial path, host driver included.

- driver and monitor: cocotbext-uart on ``rx`` / ``tx`` (:func:`bbsparse.tb.board_tb.
  open_uart`, random pauses between request bytes) under
  :class:`bbsparse.host.AsyncModelHost`, the driver that talks to a real board;
- model: :meth:`bbsparse.golden.model.IntegerModel.forward`;
- checker: INFO (version 2) describes the model and its scales; every y read back equals
  the golden outputs exactly; every run reports the same cycle count, the stall-free figure
  of the core alone (measured by the caller in the Amaranth simulator) and within the bound
  the link's timeout is checked against; LOAD_W and every malformed request are answered
  with their status, a single-matrix driver is refused, and the link then still works.

The parameters arrive as JSON in :data:`bbsparse.tb.cocotb_run.PARAMS_ENV`; the model
itself in the JSON file it names (:func:`save_model`). Assertion messages start with the
seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np

from ..golden.arith import signed_range
from ..golden.config import Config
from ..golden.model import IntegerLayer, IntegerModel
from ..golden.protocol import ModelInfo
from ..host import (
    AsyncHost,
    AsyncModelHost,
    BoardError,
    Command,
    Flags,
    LinkError,
    Status,
    beat_bytes,
    frame,
)
from .board_tb import UartTransport, open_uart
from .cocotb_run import PARAMS_ENV


def model_to_json(model: IntegerModel) -> dict:
    """`model` as JSON data (:func:`model_from_json` reads it back)."""
    return {"config": model.config.to_dict(), "out_width": model.out_width,
            "bias_width": model.bias_width,
            "layers": [{"weights": np.asarray(layer.weights).tolist(),
                        "bias": np.asarray(layer.bias).tolist(),
                        "out_shift": layer.out_shift, "relu": layer.relu,
                        "name": layer.name} for layer in model.layers]}


def model_from_json(data: dict) -> IntegerModel:
    layers = tuple(IntegerLayer(np.array(layer["weights"], dtype=np.int64),
                                np.array(layer["bias"], dtype=np.int64),
                                out_shift=layer["out_shift"], relu=layer["relu"],
                                name=layer["name"]) for layer in data["layers"])
    return IntegerModel(Config(**data["config"]), layers, out_width=data["out_width"],
                        bias_width=data["bias_width"])


def save_model(model: IntegerModel, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model_to_json(model)))
    return path


@dataclass(frozen=True)
class Params:
    model: IntegerModel
    input_exponent: int
    output_exponent: int
    divisor: int
    timeout_cycles: int
    cycles: int  # the stall-free cycles of one inference (first x beat to last y beat)
    cycles_bound: int  # hdl.board.model_run_cycles_bound
    vectors: int
    seed: int

    @classmethod
    def from_env(cls) -> Params:
        raw = json.loads(os.environ[PARAMS_ENV])
        model = model_from_json(json.loads(Path(raw.pop("model_file")).read_text()))
        return cls(model=model, **raw)

    def tag(self) -> str:
        return f"[seed {self.seed}]"

    @property
    def info(self) -> ModelInfo:
        return ModelInfo.of_model(self.model, input_exponent=self.input_exponent,
                                  output_exponent=self.output_exponent)


async def start(dut, p: Params, gap: float = 0.0) -> tuple[AsyncModelHost, UartTransport]:
    # The longest silence of a correct reply: a run, or the link's own timeout; then some.
    transport = await open_uart(dut, divisor=p.divisor,
                                bound_cycles=4 * (p.timeout_cycles + p.cycles_bound),
                                seed=p.seed, gap=gap)
    return AsyncModelHost(transport), transport


def random_input(p: Params, rng: np.random.Generator, kind: str = "random") -> np.ndarray:
    lo, hi = signed_range(p.model.config.act_width)
    if kind in ("min", "max"):
        return np.full(p.model.inputs, lo if kind == "min" else hi, dtype=np.int64)
    return rng.integers(lo, hi + 1, size=p.model.inputs)


async def expect_error(operation, status: Status, what: str) -> None:
    try:
        await operation
    except BoardError as error:
        assert error.status == status, f"{what}: expected {status.name}, got: {error}"
    else:
        raise AssertionError(f"{what}: expected {status.name}, the board answered OK")


@cocotb.test()
async def model_board_infer(dut):
    """INFO, then several inferences: y exact, the cycle count of every run the same."""
    p = Params.from_env()
    tag = p.tag()
    rng = np.random.default_rng(p.seed)
    host, _ = await start(dut, p, gap=0.1)

    info = await host.info()
    assert info == p.info, f"{tag} INFO {info} != expected {p.info}"
    assert host.model_info == info
    flags, w_beats = await host.status()
    assert flags == Flags.W_LOADED and w_beats == 0, f"{tag} fresh board: {flags!r}, {w_beats}"
    await expect_error(host.run(), Status.BAD_STATE, f"{tag} RUN without x")
    await expect_error(host.read_y(), Status.BAD_STATE, f"{tag} READ_Y before a run")

    kinds = ["random"] * max(1, p.vectors - 2) + ["min", "max"]
    for k, kind in enumerate(kinds):
        x = random_input(p, rng, kind)
        y, cycles = await host.infer(x)
        expected = p.model.forward(x)
        assert np.array_equal(y, expected), (
            f"{tag} input {k} ({kind}) {x.tolist()}: board y {y.tolist()}, golden "
            f"{expected.tolist()}")
        assert cycles == p.cycles, (f"{tag} input {k}: {cycles} cycles, the core alone "
                                    f"takes {p.cycles} without stalls")
        assert cycles <= p.cycles_bound, f"{tag} {cycles} cycles above the bound"
        dut._log.info("input %d (%s): %d outputs exact, %d cycles", k, kind, len(y), cycles)
    flags, w_beats = await host.status()
    assert flags == Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID and w_beats == 0, \
        f"{tag} after the runs: {flags!r}, {w_beats} w beats"
    assert int(dut.failed.value) == 0 and int(dut.busy.value) == 0, f"{tag} LEDs"


@cocotb.test()
async def model_board_errors(dut):
    """LOAD_W and malformed requests are answered with their status; a single-matrix
    driver is refused; the link goes on."""
    p = Params.from_env()
    tag = p.tag()
    rng = np.random.default_rng(p.seed + 1)
    host, transport = await start(dut, p)
    info = p.info
    x_bytes = beat_bytes(info.x_beat_width)

    async def raw(data: bytes, status: Status, what: str) -> None:
        got = await host.raw(data)
        assert got == status, f"{tag} {what}: expected {status.name}, got status {got}"
        assert int(dut.failed.value) == (status != Status.OK), f"{tag} {what}: failed LED"

    # LOAD_W is not a command here: BAD_COMMAND, its length counting bytes (skipped).
    await raw(frame(Command.LOAD_W, 7, bytes(range(7))), Status.BAD_COMMAND,
              "LOAD_W on a model board")
    await raw(frame(Command.LOAD_W, 0), Status.BAD_COMMAND, "LOAD_W of no byte")
    await raw(frame(0x7E, 3, b"abc"), Status.BAD_COMMAND, "unknown command")
    await raw(frame(Command.LOAD_X, info.x_beats + 1, bytes((info.x_beats + 1) * x_bytes)),
              Status.BAD_LENGTH, "LOAD_X of a long vector")
    await raw(frame(Command.RUN, 1, b"\x00"), Status.BAD_LENGTH, "RUN with a payload")
    flags, _ = await host.status()
    assert flags == Flags.W_LOADED, f"{tag} after the failed requests: {flags!r}"
    await expect_error(host.run(), Status.BAD_STATE, f"{tag} RUN after a failed LOAD_X")

    # A frame cut short: TIMEOUT after timeout_cycles, and the vector is forgotten.
    await transport.write(frame(Command.LOAD_X, info.x_beats, bytes(x_bytes + 1)))
    status = await transport.read(1)
    assert status == bytes([Status.TIMEOUT]), f"{tag} truncated LOAD_X: got {status!r}"

    # The driver of a single-matrix board reads the whole version-2 INFO and refuses it.
    try:
        await AsyncHost(transport).info()
    except LinkError as error:
        assert "model board" in str(error), f"{tag} {error}"
    else:
        raise AssertionError(f"{tag} the single-matrix driver accepted a model board")

    await host.info()
    x = random_input(p, rng)
    y, cycles = await host.infer(x)
    expected = p.model.forward(x)
    assert np.array_equal(y, expected), f"{tag} after the errors: {y.tolist()} != " \
                                        f"{expected.tolist()}"
    assert cycles == p.cycles, f"{tag} after the errors: {cycles} cycles"
    assert transport.pending() == 0, f"{tag} {transport.pending()} stray reply bytes"
