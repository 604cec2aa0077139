"""The board clock (hdl/clocking.py, synth/boards.py): the PLL settings of the iCE40 and the
ECP5 against icestorm's ``icepll`` and prjtrellis' ``ecppll``, the refusals naming the
nearest frequencies, the reset held until the PLL locks (Amaranth simulator), and the PLL
primitive in the board top a platform elaborates (no tools run)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from amaranth.sim import Simulator

from bbsparse.golden.config import Config
from bbsparse.hdl.board import BoardPins, BoardTop
from bbsparse.hdl.clocking import (
    LockReset,
    PLLError,
    ecp5_pll,
    ice40_pll,
    pll_outputs,
    pll_setting,
)
from bbsparse.synth.boards import BOARDS, BoardError, divisor_for
from bbsparse.synth.families import with_hooks
from tests.conftest import refused_elaboratables

MHZ = 1_000_000


# -- iCE40 (icepll -i F_IN -o F_OUT, SIMPLE feedback) -----------------------------------------

@pytest.mark.parametrize("f_in, f_out, divr, divf, divq, filter_range", [
    (12, 36, 0, 47, 4, 1),    # the iCEBreaker's default
    (12, 48, 0, 63, 4, 1),
    (12, 96, 0, 63, 3, 1),    # icepll -i 12 -o 96
    (12, 30, 0, 79, 5, 1),
    (48, 60, 0, 19, 4, 4),    # icepll -i 48 (default -o 60)
    (48, 100, 2, 49, 3, 1),   # icepll -i 48 -o 100
    (48, 150, 1, 24, 2, 2),   # icepll -i 48 -o 150
])
def test_ice40_pll_matches_icepll(f_in, f_out, divr, divf, divq, filter_range):
    setting = ice40_pll(f_in * MHZ, f_out * MHZ)
    assert setting.params == {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                              "FILTER_RANGE": filter_range}
    assert setting.output_hz == f_out * MHZ and setting.primitive == "SB_PLL40_PAD"
    assert setting.pfd_hz == Fraction(f_in * MHZ, divr + 1)
    assert setting.vco_hz == setting.pfd_hz * (divf + 1) == setting.output_hz * 2 ** divq
    assert 533 * MHZ <= setting.vco_hz <= 1066 * MHZ


def test_ice40_outputs_from_12_mhz():
    outputs = pll_outputs("ice40", 12 * MHZ)
    # 12 MHz allows only DIVR 0 (the PFD must be 10-133 MHz): steps of 12 / 2**DIVQ MHz.
    assert outputs[0] == Fraction(16125, 1000) * MHZ and outputs[-1] == 270 * MHZ
    assert 36 * MHZ in outputs and Fraction(3675, 100) * MHZ in outputs
    assert 37 * MHZ not in outputs


@pytest.mark.parametrize("family, f_in, f_out, message", [
    ("ice40", 12, 37, r"cannot make 37 MHz from 12 MHz .*the nearest it can: 36\.75 MHz and "
                      r"37\.5 MHz"),
    ("ice40", 12, 12, r"cannot make 12 MHz .*outputs span 16\.125-270 MHz.*nearest it can: "
                      r"16\.125 MHz$"),
    ("ice40", 12, 300, r"nearest it can: 270 MHz$"),
    ("ecp5", 25, 33.3, r"cannot make 33\.3 MHz from 25 MHz .*nearest it can: 32\.1429 MHz "
                       r"and 33\.3333 MHz"),
    ("ecp5", 25, 500, r"outputs span 10-400 MHz.*nearest it can: 400 MHz$"),
    ("ice40", 5, 36, r"cannot run from a 5 MHz input"),
])
def test_pll_refuses_naming_the_nearest(family, f_in, f_out, message):
    with pytest.raises(PLLError, match=message):
        pll_setting(family, f_in * MHZ, f_out * MHZ)


def test_pll_rejects_bad_arguments():
    with pytest.raises(PLLError, match="no PLL model for the 'gowin' family"):
        pll_setting("gowin", 12 * MHZ, 36 * MHZ)
    with pytest.raises(PLLError, match="a frequency must be a positive number of Hz"):
        ice40_pll(12 * MHZ, -1)


# -- ECP5 (ecppll -i F_IN -o F_OUT) -----------------------------------------------------------

@pytest.mark.parametrize("f_in, f_out, clki, clkfb, clkop", [
    (25, 75, 1, 3, 8),        # the ULX3S's default: VCO 600 MHz
    (25, 100, 1, 4, 6),
    (25, 50, 1, 2, 12),
    (25, 62.5, 2, 5, 10),
    (12, 48, 1, 4, 12),       # ecppll's own table: VCO 576 (624 is as near 600; the first)
    (12, 60, 1, 5, 10),       # ecppll's table
    (20, 30, 2, 3, 20),       # ecppll's table
])
def test_ecp5_pll_matches_ecppll(f_in, f_out, clki, clkfb, clkop):
    setting = ecp5_pll(f_in * MHZ, f_out * MHZ)
    assert (setting.params["CLKI_DIV"], setting.params["CLKFB_DIV"],
            setting.params["CLKOP_DIV"]) == (clki, clkfb, clkop)
    assert setting.params["CLKOP_CPHASE"] == clkop // 2
    assert setting.output_hz == Fraction(f_out) * MHZ
    assert setting.vco_hz == setting.output_hz * clkop
    assert 400 * MHZ <= setting.vco_hz <= 800 * MHZ


def test_ecp5_pll_within_100_ppm():
    # 33.333 MHz asks for 100/3 MHz (30 ppm away): CLKI_DIV 3, CLKFB_DIV 4.
    setting = ecp5_pll(25 * MHZ, 33.333 * MHZ)
    assert setting.output_hz == Fraction(100, 3) * MHZ
    assert setting.to_dict()["output_mhz"] == 33.333333


# -- the boards -------------------------------------------------------------------------------

def test_board_clocks():
    icebreaker, ulx3s = BOARDS["icebreaker"], BOARDS["ulx3s"]
    hz, pll = icebreaker.clock()
    assert hz == 36e6 >= 2 * icebreaker.clock_hz and pll.params["DIVF"] == 47
    hz, pll = ulx3s.clock()
    assert hz == 75e6 >= 2 * ulx3s.clock_hz and pll.params["CLKFB_DIV"] == 3
    assert ulx3s.clock(100)[1].params["CLKOP_DIV"] == 6
    # The oscillator itself: no PLL.
    assert icebreaker.clock(12) == (12e6, None) and ulx3s.clock(25.0) == (25e6, None)
    with pytest.raises(BoardError, match=r"--clock-mhz 37 on the icebreaker: .*36\.75 MHz and "
                                         r"37\.5 MHz \(or 12 MHz: the oscillator, no PLL\)"):
        icebreaker.clock(37)
    with pytest.raises(BoardError, match="clock_mhz must be a positive number of MHz"):
        ulx3s.clock(0)


def test_uart_divisor_at_the_pll_clock():
    assert divisor_for(36e6, 115200) == 312 and divisor_for(75e6, 115200) == 651
    assert divisor_for(36e6, 3_000_000) == 12


def test_lock_reset_holds_until_locked():
    """`rst` stays high until `lock` has been high (through two synchronising flip-flops)
    for `delay` cycles, and rises again as soon as the falling `lock` is through them."""
    dut = LockReset(5)
    trace = []

    async def bench(ctx):
        for cycle in range(40):
            ctx.set(dut.lock, 3 <= cycle < 25)
            await ctx.tick()
            trace.append(ctx.get(dut.rst))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    low = [i for i, rst in enumerate(trace) if not rst]
    # lock is high from edge 3 to edge 24: synchronised after edge 4, counted to 5 by edge
    # 9, rst low after edge 10; lock's fall (edge 25) is through after edge 26, rst high
    # after edge 27.
    assert low == list(range(10, 27)), trace
    with refused_elaboratables(), pytest.raises(ValueError,
                                                match="delay must be a positive integer"):
        LockReset(0)


@pytest.mark.parametrize("board, primitive, params", [
    ("icebreaker", "SB_PLL40_PAD", {"DIVF": 47, "DIVQ": 4}),
    ("ulx3s", "EHXPLLL", {"CLKFB_DIV": 3, "CLKOP_DIV": 8}),
])
def test_board_top_has_the_pll(board, primitive, params, tmp_path):
    """The board top a platform elaborates has the PLL with its dividers, and the PLL's
    output frequency as a clock constraint (RTLIL and constraint files, no tool run)."""
    b = BOARDS[board]
    config = Config(lanes=2, pes=1, cols=16, bank_size=4, nnz_per_bank=1)
    hz, pll = b.clock()
    top = BoardTop(config, divisor=divisor_for(hz, 115200), max_w_beats=8, clock_hz=hz)
    platform = with_hooks(b.platform_class(), b.target_info.family)()
    plan = platform.build(BoardPins(top, leds=b.leds, pll=pll), name="bbs_board",
                          build_dir=str(tmp_path), do_build=False)
    plan.extract(str(tmp_path))
    rtlil = (tmp_path / "bbs_board.il").read_text()
    assert f"cell \\{primitive} " in rtlil
    for name, value in params.items():
        assert f"parameter \\{name} {value}\n" in rtlil, name
    constraints = (tmp_path / ("bbs_board.pcf" if board == "icebreaker" else
                               "bbs_board.lpf")).read_text()
    assert ("set_frequency clock.pll_clk 36.0" in constraints if board == "icebreaker" else
            'FREQUENCY NET "clock.pll_clk" 75000000.0 HZ' in constraints), constraints


def test_board_top_without_pll_uses_the_oscillator(tmp_path):
    b = BOARDS["icebreaker"]
    config = Config(lanes=2, pes=1, cols=16, bank_size=4, nnz_per_bank=1)
    top = BoardTop(config, divisor=104, max_w_beats=8, clock_hz=12e6)
    platform = with_hooks(b.platform_class(), b.target_info.family)()
    platform.build(BoardPins(top, leds=b.leds), name="bbs_board", build_dir=str(tmp_path),
                   do_build=False).extract(str(tmp_path))
    assert "SB_PLL40" not in (tmp_path / "bbs_board.il").read_text()
