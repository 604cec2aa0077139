"""The model board top (:class:`bbsparse.hdl.board.ModelBoardTop`: UART, host link, a whole
compiled model with its weights in ROM) under Verilator, driven through the serial line by
the model host driver (:class:`bbsparse.host.AsyncModelHost`) over cocotbext-uart, checked
against the golden forward pass (tb/model_board_tb.py); and its construction rules and
INFO version 2.

Run with ``.venv/bin/pytest -q tests/test_rtl_model_board.py``; ``BBSPARSE_SEED=<n>``
replays a seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden import csb
from bbsparse.golden.protocol import (
    INFO_VERSION_MODEL,
    MODEL_INFO_FIELDS,
    ModelInfo,
    info_data_bytes,
)
from bbsparse.hdl.board import ModelBoardTop, model_run_cycles_bound
from bbsparse.hdl.host_link import ModelHostLink
from bbsparse.hdl.model import ModelCore
from bbsparse.synth.boards import BoardError, build_model_board
from bbsparse.tb.cocotb_run import component_design, run_design
from bbsparse.tb.model_board_tb import model_from_json, model_to_json, save_model
from bbsparse.tb.verilator import GENERATED_BOARD
from bbsparse.toolchain import build_root
from tests.test_hdl_model import random_model

TOP = GENERATED_BOARD.removesuffix(".v")

# Two models of three layers: a small one (2 lanes x 2 PEs, banks of 4 with 2 nonzeros, 8
# clock cycles a bit) and one shaped for the UP5K (8 lanes x 1 PE, banks of 8 with 2
# nonzeros: 64 -> 32 -> 16 -> 10, 4 cycles a bit). Negative and positive exponents check
# the signed INFO fields.
CASES = {
    "model-l2p2": dict(model=dict(sizes=(20, 13, 9, 5), lanes=2, pes=2, bank_size=4, nnz=2),
                       divisor=8, timeout_cycles=3000, exponents=(-7, -12), vectors=4),
    "model-up5k-l8p1": dict(model=dict(sizes=(64, 32, 16, 10), lanes=8, pes=1, bank_size=8,
                                       nnz=2),
                            divisor=4, timeout_cycles=3000, exponents=(-5, 3), vectors=3),
}


def seed_of(case_id: str) -> int:
    if "BBSPARSE_SEED" in os.environ:
        return int(os.environ["BBSPARSE_SEED"])
    return zlib.crc32(case_id.encode()) % 100_000


def model_of(case_id: str):
    spec = CASES[case_id]["model"]
    return random_model(sum(spec["sizes"]) + spec["lanes"], **spec)


def stall_free_cycles(model) -> int:
    """Cycles of one inference of the model core alone in the Amaranth simulator, from the
    first x beat accepted to the last y beat, inclusive, with x offered every cycle from
    the second cycle after reset (as the link's x source does) and y always ready."""
    dut = ModelCore(model)
    c0 = model.layer_config(0)
    words = csb.x_beat_ints(c0, csb.pack_x(c0, np.zeros(c0.cols, dtype=np.int64)))
    groups = model.layer_config(len(model.layers) - 1).row_groups(model.outputs)
    result = {}

    async def bench(ctx):
        x, y = dut.s_axis_x, dut.m_axis_y
        ctx.set(y.tready, 1)
        await ctx.tick()
        sent, seen, cycle, first, last = 0, 0, 0, None, None
        while seen < groups:
            ctx.set(x.tvalid, sent < len(words))
            if sent < len(words):
                ctx.set(x.tdata, words[sent])
                ctx.set(x.tlast, sent == len(words) - 1)
            x_fire = sent < len(words) and ctx.get(x.tready)
            y_fire = ctx.get(y.tvalid)
            await ctx.tick()
            if x_fire:
                first = cycle if first is None else first
                sent += 1
            if y_fire:
                seen, last = seen + 1, cycle
            cycle += 1
            assert cycle < 100_000, "the model core gave no result"
        result["cycles"] = last - first + 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["cycles"]


# -- construction and INFO -------------------------------------------------------------------


def test_model_board_rejects_bad_parameters():
    model = model_of("model-l2p2")
    bound = model_run_cycles_bound(model)
    with pytest.raises(ValueError, match=rf"timeout_cycles \(100\) must exceed the longest run "
                                         rf"of this model \({bound} cycles at most\)"):
        ModelBoardTop(model, divisor=8, input_exponent=0, output_exponent=0,
                      timeout_cycles=100)
    with pytest.raises(TypeError, match="model must be a bbsparse IntegerModel"):
        ModelBoardTop(model.config, divisor=8, input_exponent=0, output_exponent=0)
    with pytest.raises(ValueError, match="divisor must be an integer of at least 4"):
        ModelBoardTop(model, divisor=3, input_exponent=0, output_exponent=0)
    with pytest.raises(ValueError, match=r"INFO field input_exponent must be an integer that "
                                         r"fits i16 \(-32768..32767\), not 40000"):
        ModelBoardTop(model, divisor=8, input_exponent=40000, output_exponent=0)
    with pytest.raises(ValueError, match="timeout_cycles must be an integer of at least 16"):
        ModelHostLink(model, input_exponent=0, output_exponent=0, timeout_cycles=8)
    with pytest.raises(TypeError, match="model must be a bbsparse IntegerModel"):
        ModelHostLink(model.config, input_exponent=0, output_exponent=0, timeout_cycles=100)


def test_model_info_bytes_describe_the_model():
    model = model_of("model-l2p2")
    data = ModelHostLink.info_bytes_of(model, input_exponent=-7, output_exponent=-300)
    assert data[0] == INFO_VERSION_MODEL == 2
    assert len(data) == 1 + info_data_bytes(2) == 1 + 2 * len(MODEL_INFO_FIELDS) == 27
    info = ModelInfo.from_bytes(data[1:])
    c = model.config
    assert info.fields() == {
        "lanes": 2, "pes": 2, "bank_size": 4, "nnz_per_bank": 2, "act_width": c.act_width,
        "out_width": model.out_width, "layers": 3, "inputs": 20, "outputs": 5,
        "x_beats": model.layer_config(0).x_beats, "y_beats": 3, "input_exponent": -7,
        "output_exponent": -300}
    assert data[-2:] == (-300).to_bytes(2, "little", signed=True)
    assert info == ModelInfo.of_model(model, input_exponent=-7, output_exponent=-300)
    assert info.x_config().x_beats == info.x_beats == 12  # 20 inputs: 6 banks, 3 rounds
    assert info.y_beat_width == 2 * model.out_width


def test_model_json_round_trip():
    model = model_of("model-l2p2")
    again = model_from_json(json.loads(json.dumps(model_to_json(model))))
    x = np.arange(-10, 10)
    assert np.array_equal(again.forward(x), model.forward(x))


def test_stall_free_cycles_within_the_bound():
    for case_id in CASES:
        model = model_of(case_id)
        cycles = stall_free_cycles(model)
        lower = sum(layer.rows for layer in model.layers)  # a row at least a cycle each
        assert lower < cycles <= model_run_cycles_bound(model), (case_id, cycles)


# -- the board over its UART pins ------------------------------------------------------------


@pytest.mark.parametrize("case_id", list(CASES))
@pytest.mark.parametrize("testcase", ["model_board_infer", "model_board_errors"])
def test_model_board_over_uart(case_id, testcase):
    case = CASES[case_id]
    model = model_of(case_id)
    input_exponent, output_exponent = case["exponents"]
    top = ModelBoardTop(model, divisor=case["divisor"], input_exponent=input_exponent,
                        output_exponent=output_exponent, timeout_cycles=case["timeout_cycles"])
    design = component_design(top, TOP, "bbsparse.tb.model_board_tb",
                              f"ModelBoardTop({case})")
    text = json.dumps(model_to_json(model))
    model_file = save_model(model, build_root() / "model-boards" / (
        f"{case_id}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"))
    params = {"model_file": str(model_file), "input_exponent": input_exponent,
              "output_exponent": output_exponent, "divisor": case["divisor"],
              "timeout_cycles": case["timeout_cycles"], "cycles": stall_free_cycles(model),
              "cycles_bound": model_run_cycles_bound(model), "vectors": case["vectors"],
              "seed": seed_of(case_id)}
    run_design(design, params, [testcase], name=f"{case_id}-{testcase}",
               replay=f"BBSPARSE_SEED={params['seed']} pytest "
                      f"'tests/test_rtl_model_board.py::test_model_board_over_uart"
                      f"[{testcase}-{case_id}]'")


@pytest.mark.slow
@pytest.mark.parametrize("board, case_id", [("icebreaker", "model-up5k-l8p1"),
                                            ("ulx3s", "model-l2p2")])
def test_model_board_bitstream(board, case_id, tmp_path):
    """A model board with the board's pins, down to a bitstream (YoWASP Yosys, nextpnr,
    packer; about a minute on the iCEBreaker, 25 s on the ULX3S) and its report; on the
    UP5K, the 64 -> 32 -> 16 -> 10 model's weight ROM (10 kbit) is in block RAM with its
    contents (the small model's ROMs are so small that Yosys puts them in LUTs)."""
    model = model_of(case_id)
    lines = []
    report = build_model_board(model, board, tmp_path, input_exponent=-7,
                               output_exponent=-12, log=lines.append)
    assert (tmp_path / report["bitstream"]).stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["fmax"]["met"], report["fmax"]
    assert report["pll"] and report["clock_mhz"] >= 2 * report["board_clock_mhz"]
    assert abs(report["fmax"]["constraint_mhz"] - report["clock_mhz"]) < 0.01
    assert report["dsps"] == model.config.multipliers
    assert report["info"]["input_exponent"] == -7 and report["info"]["layers"] == 3
    assert report["model"]["rom_bits"]["total"] > 0
    assert any(line.startswith("[1/") for line in lines), lines
    if board == "icebreaker":
        netlist = json.loads((tmp_path / "bbs_board.json").read_text())
        roms = [cell["parameters"] for module in netlist["modules"].values()
                for name, cell in module["cells"].items()
                if cell["type"] == "SB_RAM40_4K" and ".w_rom." in name]
        assert roms, "the weight ROM is not in SB_RAM40_4K"
        # Every block holds weights (a block's unused data bits are "x").
        assert all({"0", "1"} <= set(p["INIT_0"]) for p in roms), "a ROM block without data"
    with pytest.raises(BoardError, match="board must be one of icebreaker, ulx3s"):
        build_model_board(model, "nexys", tmp_path, input_exponent=0, output_exponent=0)
