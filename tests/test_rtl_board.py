"""The board top (:class:`bbsparse.hdl.board.BoardTop`: UART, host link, weight memory,
core) under Verilator, driven through the serial line by the host driver
(:class:`bbsparse.host.AsyncHost`) over cocotbext-uart, checked against the golden model
(tb/board_tb.py).

Run with ``eval "$(.venv/bin/python -m bbsparse.toolchain)" && .venv/bin/pytest -q
tests/test_rtl_board.py``; ``BBSPARSE_SEED=<n>`` replays a seed.
"""

from __future__ import annotations

import os
import zlib

import pytest

from bbsparse.golden.config import Config
from bbsparse.hdl.board import BoardTop
from bbsparse.hdl.host_link import HostLink
from bbsparse.hdl.spmv import BBSSpMV
from bbsparse.hdl.uart import UART
from bbsparse.host import INFO_FIELDS, INFO_VERSION, BoardInfo
from bbsparse.synth.boards import BOARDS, BoardError, build_board, divisor_for
from bbsparse.tb.cocotb_run import component_design, run_design
from bbsparse.tb.verilator import GENERATED_BOARD

TOP = GENERATED_BOARD.removesuffix(".v")

# Small enough that a run is quick: 2 lanes x 2 PEs, 16 columns in banks of 4 with one
# nonzero (2 beats a row group, 8 x beats), a 32-beat weight memory (32 rows), 8 clock
# cycles a bit, and a 2000-cycle timeout.
CASES = {
    "board-l2p2": dict(config=dict(lanes=2, pes=2, cols=16, bank_size=4, nnz_per_bank=1),
                       divisor=8, max_w_beats=32, timeout_cycles=2000),
    # 2:4 with an output stage (shift, ReLU, narrow out_width), 3 lanes (a padded round),
    # 1 PE, and the smallest divisor.
    "board-l3p1-relu": dict(config=dict(lanes=3, pes=1, cols=24, bank_size=4, nnz_per_bank=2,
                                        out_width=8, out_shift=3, relu=True),
                            divisor=4, max_w_beats=24, timeout_cycles=1000),
}


def test_construction_rejects_bad_parameters():
    with pytest.raises(ValueError, match="divisor must be an integer of at least 4 .*not 3"):
        UART(3)
    config = Config(**CASES["board-l2p2"]["config"])
    with pytest.raises(ValueError, match=r"max_w_beats must be an integer from cycles_per_row "
                                         r"\(2\) to 65535 .*not 1"):
        HostLink(config, max_w_beats=1, timeout_cycles=100)
    with pytest.raises(ValueError, match="max_w_beats .* not 65536"):
        HostLink(config, max_w_beats=65536, timeout_cycles=100)
    with pytest.raises(ValueError, match="timeout_cycles must be an integer of at least 16"):
        HostLink(config, max_w_beats=8, timeout_cycles=8)
    with pytest.raises(ValueError, match="config.pattern must be 'bbs'"):
        HostLink(Config(lanes=2, pes=1, cols=16, pattern="unstructured"), max_w_beats=8,
                 timeout_cycles=100)
    with pytest.raises(TypeError, match="config must be a bbsparse Config"):
        HostLink({"lanes": 2}, max_w_beats=8, timeout_cycles=100)


def test_baud_divisor():
    assert divisor_for(12e6, 115200) == 104 and divisor_for(25e6, 115200) == 217
    # At the boards' PLL clocks (36 and 75 MHz).
    assert divisor_for(36e6, 115200) == 312 and divisor_for(75e6, 115200) == 651
    assert divisor_for(12e6, 3_000_000) == 4
    with pytest.raises(BoardError, match="too fast for a 12 MHz clock"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(BoardError, match="baud 2500000 is 4.0% off at 12 MHz"):
        divisor_for(12e6, 2_500_000)


def test_info_bytes_describe_the_core():
    config = Config(**CASES["board-l3p1-relu"]["config"])
    info = HostLink.info_bytes_of(config, 24)
    assert info[0] == INFO_VERSION and len(info) == 1 + 2 * len(INFO_FIELDS)
    fields = {name: int.from_bytes(info[1 + 2 * i:3 + 2 * i], "little")
              for i, name in enumerate(INFO_FIELDS)}
    assert BoardInfo.from_fields(fields) == BoardInfo(config, 24)


def seed_of(case_id: str) -> int:
    if "BBSPARSE_SEED" in os.environ:
        return int(os.environ["BBSPARSE_SEED"])
    return zlib.crc32(case_id.encode()) % 100_000


@pytest.mark.parametrize("case_id", list(CASES))
@pytest.mark.parametrize("testcase", ["board_spmv", "board_errors"])
def test_board_over_uart(case_id, testcase):
    case = CASES[case_id]
    config = Config(**case["config"])
    top = BoardTop(config, divisor=case["divisor"], max_w_beats=case["max_w_beats"],
                   timeout_cycles=case["timeout_cycles"])
    design = component_design(top, TOP, "bbsparse.tb.board_tb", f"BoardTop({case})")
    params = {"config": config.to_dict(), "divisor": case["divisor"],
              "max_w_beats": case["max_w_beats"], "timeout_cycles": case["timeout_cycles"],
              "latency": BBSSpMV.latency_of(config), "seed": seed_of(case_id)}
    run_design(design, params, [testcase], name=f"{case_id}-{testcase}",
               replay=f"BBSPARSE_SEED={params['seed']} pytest "
                      f"'tests/test_rtl_board.py::test_board_over_uart[{testcase}-{case_id}]'")


@pytest.mark.slow
@pytest.mark.parametrize("board", list(BOARDS))
def test_board_bitstream(board, tmp_path):
    """The board top of a small core with the board's pins, down to a bitstream (YoWASP
    Yosys, nextpnr, packer; about 15 s each)."""
    config = Config(**CASES["board-l2p2"]["config"])
    report = build_board(BOARDS[board], config, tmp_path, max_w_beats=64)
    assert (tmp_path / report["bitstream"]).stat().st_size > 0
    assert report["fmax"]["met"], report["fmax"]
    # The design runs from the PLL, constrained at its output, its UART divisor from it.
    b = BOARDS[board]
    assert report["clock_mhz"] == b.default_clock_hz / 1e6 >= 2 * report["board_clock_mhz"]
    assert report["pll"]["output_mhz"] == report["clock_mhz"]
    assert abs(report["fmax"]["constraint_mhz"] - report["clock_mhz"]) < 0.01
    assert report["divisor"] == divisor_for(b.default_clock_hz, 115200)
    assert report["cells"]["dsps"] == config.multipliers
    constraints = (tmp_path / ("bbs_board.pcf" if board == "icebreaker" else "bbs_board.lpf"))
    text = constraints.read_text()
    rx, tx = ("6", "9") if board == "icebreaker" else ("M1", "L4")
    assert rx in text and tx in text
