"""The FPGA families (synth/families): the one dispatch, what each family tells the tools,
and the platform hooks the HDL asks instead of testing the family. No tool runs here.
"""

import pytest
from amaranth.back import verilog

from bbsparse.golden.config import Config
from bbsparse.hdl.pe import PE
from bbsparse.synth.boards import BOARDS
from bbsparse.synth.families import (
    ECP5,
    FAMILIES,
    ICE40,
    RAM_POLICIES,
    Family,
    FamilyPlatform,
    family_of,
    with_hooks,
)
from bbsparse.synth.families.base import register
from bbsparse.synth.families.ecp5 import ECP5Multiplier
from bbsparse.synth.targets import TARGETS
from bbsparse.synth.top import SynthTop

PE_PARAMS = dict(lanes=2, weight_width=8, act_width=8, acc_width=20)


# -- the dispatch --------------------------------------------------------------------------------


def test_every_target_has_a_registered_family():
    assert set(FAMILIES) == {"ice40", "ecp5"}
    for target in TARGETS.values():
        assert FAMILIES[target.family.name] is target.family
    assert family_of("ecp5") is ECP5 and family_of("ice40") is ICE40


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown FPGA family 'gowin'; known: ice40, ecp5"):
        family_of("gowin")


def test_a_family_missing_part_of_its_description_is_refused():
    class Half(Family):
        name = "half"
        dsp_name = "DSP"

    with pytest.raises(TypeError, match=r"Half does not define dsp_width, bram, synth"):
        register(Half())


def test_a_target_needs_a_family_object():
    import dataclasses

    with pytest.raises(TypeError, match=r"family must be a Family .*not 'ecp5'"):
        dataclasses.replace(TARGETS["ecp5-25k"], family="ecp5")


# -- what each family tells the tools (the commands of the flow before the families) -----------


def test_yosys_commands_and_ram_policies():
    assert ICE40.synth_command() == "synth_ice40 -dsp"
    assert ICE40.synth_command("block") == "synth_ice40 -dsp"  # no LUT RAM to avoid
    assert ECP5.synth_command() == "synth_ecp5"
    assert ECP5.synth_command("lutram") == "synth_ecp5 -nobram"
    assert ECP5.synth_command("block") == "synth_ecp5 -nolutram"
    with pytest.raises(ValueError, match="the ice40 family has no --ram lutram"):
        ICE40.synth_command("lutram")
    assert set(ECP5.ram_options) == set(RAM_POLICIES)


@pytest.mark.parametrize("name, device_args, layout, files", [
    ("ice40-up5k", ["--up5k", "--package", "sg48"], ["--pcf", "c", "--asc", "p"],
     (".pcf", ".asc", ".bin", "nextpnr-ice40", "icepack")),
    ("ecp5-25k", ["--25k", "--package", "CABGA381", "--speed", "6"],
     ["--lpf", "c", "--textcfg", "p"], (".lpf", ".config", ".bit", "nextpnr-ecp5", "ecppack")),
    ("ecp5-85k", ["--85k", "--package", "CABGA381", "--speed", "6"],
     ["--lpf", "c", "--textcfg", "p"], (".lpf", ".config", ".bit", "nextpnr-ecp5", "ecppack")),
])
def test_nextpnr_and_packer(name, device_args, layout, files):
    target = TARGETS[name]
    family = target.family
    assert family.nextpnr_device_args(target) == device_args
    assert family.nextpnr_layout_args("c", "p") == layout
    assert (family.constraints_suffix, family.placed_suffix, family.bitstream_suffix,
            family.nextpnr, family.packer) == files


def test_constraint_files():
    assert TARGETS["ice40-up5k"].constraints() == (
        "set_io clk 35\nset_io rst 10\nset_io sin 6\nset_io load 4\nset_io sout 9\n")
    lpf = TARGETS["ecp5-25k"].constraints().splitlines()
    assert lpf[:2] == ['LOCATE COMP "clk" SITE "G2";', 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;']
    assert len(lpf) == 10


def test_cell_names():
    ice40 = ICE40.cell_counts({"SB_LUT4": 5, "SB_DFF": 2, "SB_DFFESR": 3, "SB_MAC16": 1,
                               "SB_RAM40_4K": 4, "SB_CARRY": 9})
    assert ice40 == {"dsps": 1, "brams": 4, "lutram_units": 0, "luts": 5, "ffs": 5}
    ecp5 = ECP5.cell_counts({"LUT4": 5, "TRELLIS_FF": 7, "MULT18X18D": 2, "DP16KD": 1,
                             "PDPW16KD": 2, "TRELLIS_DPR16X4": 6, "CCU2C": 3})
    assert ecp5 == {"dsps": 2, "brams": 3, "lutram_units": 6, "luts": 5, "ffs": 7}


def test_board_build_options():
    assert ICE40.board_options() == {"synth_opts": "-dsp"}
    assert ECP5.board_options() == {"script_after_read": "proc\nflatten"}


# -- the platform hooks --------------------------------------------------------------------------


def unused(component):
    """`component`, marked as meant to stay unelaborated (no UnusedElaboratable warning)."""
    component._MustUse__silence = True
    return component


def test_multiplier_hook():
    assert ICE40.get_multiplier(8, 8) is None  # synth_ice40 -dsp packs the fabric registers
    assert ECP5.get_multiplier(19, 8) is None  # wider than one MULT18X18D
    mult = unused(ECP5.get_multiplier(18, 18))
    assert isinstance(mult, ECP5Multiplier) and mult.latency == 2
    assert unused(ECP5.get_multiplier(8, 8)) is not mult  # one block per call


def test_pe_without_a_hook_is_the_fabric_pe():
    # No platform, a platform without hooks, and the iCE40's (None for every multiplier)
    # all give the same Verilog: registers and `*`, which Yosys packs into SB_MAC16.
    plain = verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False)
    assert "MULT18X18D" not in plain and "lane1_product" in plain
    for platform in (object(), FamilyPlatform(ICE40)):
        assert verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                               platform=platform) == plain


def test_pe_takes_the_ecp5_multiplier():
    text = verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                           platform=FamilyPlatform(ECP5))
    assert text.count("MULT18X18D #(") == 2 and "lane1_product" not in text
    assert '.REG_INPUTA_CLK("CLK0")' in text and '.REG_OUTPUT_CLK("CLK0")' in text


def test_pe_refuses_a_multiplier_of_another_latency():
    class SlowMultiplier(ECP5Multiplier):
        latency = 3
        _MustUse__silence = True  # refused before it could be used

    class Platform:
        def get_multiplier(self, a_width, b_width):
            return SlowMultiplier()

    with pytest.raises(ValueError, match="multiplier must have latency 2 .*not 3"):
        verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False, platform=Platform())


@pytest.mark.parametrize("family", [ICE40, ECP5], ids=lambda f: f.name)
def test_memory_hook_keeps_amaranths_own_memories(family):
    # get_memory answers Amaranth's lowering when the family has no vendor memory: the
    # netlist of the synthesis top is exactly the one of a platform without the hook.
    config = Config(lanes=2, pes=1, bank_size=4, nnz_per_bank=1, cols=64)

    class MultiplierOnly:
        def get_multiplier(self, a_width, b_width):
            return family.get_multiplier(a_width, b_width)

    with_hook = verilog.convert(SynthTop(config), name="top", emit_src=False,
                                platform=FamilyPlatform(family))
    without = verilog.convert(SynthTop(config), name="top", emit_src=False,
                              platform=MultiplierOnly())
    assert hasattr(FamilyPlatform(family), "get_memory")
    assert with_hook == without and "reg [7:0] bank" in with_hook


@pytest.mark.parametrize("board", list(BOARDS))
def test_board_platform_gets_the_hooks(board):
    b = BOARDS[board]
    platform_class = b.platform_class()
    hooked = with_hooks(platform_class, b.target_info.family)()
    assert isinstance(hooked, platform_class) and hooked.fpga_family is b.target_info.family
    mult = hooked.get_multiplier(8, 8)
    if b.target_info.family is ECP5:
        assert isinstance(unused(mult), ECP5Multiplier)
    else:
        assert mult is None
