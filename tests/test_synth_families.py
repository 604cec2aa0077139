"""The FPGA families (synth/families): the one dispatch, what each family tells the tools,
and the platform hooks the HDL asks instead of testing the family. No tool runs here.
"""

import pytest
from amaranth.back import verilog

from bbsparse.golden.config import Config
from bbsparse.hdl.banks import VectorBanks
from bbsparse.hdl.mac_array import MACArray
from bbsparse.hdl.pe import PE
from bbsparse.synth.boards import BOARDS
from bbsparse.synth.families import (
    ECP5,
    FAMILIES,
    ICE40,
    KEEP_COPIES,
    RAM_POLICIES,
    Family,
    FamilyPlatform,
    family_of,
    memory_choice,
    with_hooks,
)
from bbsparse.synth.families.base import dsp_floorplan, register
from bbsparse.synth.families.ecp5 import ECP5BlockRam, ECP5Multiplier
from bbsparse.synth.families.ice40 import ICE40Multiplier
from bbsparse.synth.targets import TARGETS
from bbsparse.synth.top import SynthTop
from tests.conftest import refused_elaboratables

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
    # No -dsp: the SB_MAC16 blocks are instantiated (get_multiplier), and -dsp's ice40_dsp
    # pass would turn their registers off.
    assert ICE40.synth_command() == "synth_ice40"
    assert ICE40.synth_command("block") == "synth_ice40"  # no LUT RAM to avoid
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
    assert ICE40.board_options() == {}
    # proc and flatten before synth_ecp5, and no wire named like a bit of another (abc9).
    assert ECP5.board_options() == {"script_after_read": "proc\nflatten\nrename -hide w:*]"}


def test_pre_synth_script():
    # Every flow keeps the register copies; the ECP5's also hides wires named like a bit of
    # another before synth_ecp5 (abc9 of Yosys 0.70 fails on the 85k's largest mixes).
    assert ICE40.pre_synth_script() == KEEP_COPIES
    assert ECP5.pre_synth_script().startswith(KEEP_COPIES)
    assert "rename -hide w:*]" in ECP5.pre_synth_script().splitlines()


# -- the platform hooks --------------------------------------------------------------------------


def unused(component):
    """`component`, marked as meant to stay unelaborated (no UnusedElaboratable warning)."""
    component._MustUse__silence = True
    return component


def test_multiplier_hook():
    assert ICE40.get_multiplier(17, 8) is None  # wider than one SB_MAC16
    mac = unused(ICE40.get_multiplier(16, 16))
    assert isinstance(mac, ICE40Multiplier) and mac.latency == 2
    assert ECP5.get_multiplier(19, 8) is None  # wider than one MULT18X18D
    mult = unused(ECP5.get_multiplier(18, 18))
    assert isinstance(mult, ECP5Multiplier) and mult.latency == 2
    assert unused(ECP5.get_multiplier(8, 8)) is not mult  # one block per call


def test_pe_without_a_hook_is_the_fabric_pe():
    # No platform and a platform without hooks give the same Verilog: registers and `*`.
    plain = verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False)
    assert "MULT18X18D" not in plain and "SB_MAC16" not in plain and "lane1_product" in plain
    assert verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                           platform=object()) == plain


def test_pe_takes_the_ecp5_multiplier():
    text = verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                           platform=FamilyPlatform(ECP5))
    assert text.count("MULT18X18D #(") == 2 and "lane1_product" not in text
    assert '.REG_INPUTA_CLK("CLK0")' in text and '.REG_OUTPUT_CLK("CLK0")' in text


def test_dsp_floorplan_gives_each_pe_a_band_of_columns():
    """The ECP5-85k's 156 sites (3 DSP rows): each PE's hard multipliers in a band of
    columns of their own over every row, handed out row by row; none twice."""
    sites = TARGETS["ecp5-85k"].dsp_sites
    assert len(sites) == len(set(sites)) == 156
    plan = dsp_floorplan(sites, [64, 64, 28, 0, 0])
    assert [len(group) for group in plan] == [64, 64, 28, 0, 0]
    assert len({site for group in plan for site in group}) == 156

    def place(site):
        x, y, _ = site.split("/")
        return int(x[1:]), int(y[1:])
    bands = [[place(site) for site in group] for group in plan[:3]]
    for left, right in zip(bands[:-1], bands[1:], strict=True):
        # At most one column shared at a band's edge (64 is not a multiple of 3 rows).
        assert max(x for x, _ in left) <= min(x for x, _ in right)
    for band in bands:
        assert {y for _, y in band} == {10, 34, 58}
        assert band == sorted(band, key=lambda p: (p[1], p[0]))  # row by row
    # Fewer sites than multipliers: refused; no sites: the placer's choice.
    with pytest.raises(ValueError, match="^a DSP floorplan of 10 sites cannot place 12 hard "
                                         "multipliers$"):
        dsp_floorplan(sites[:10], [8, 4])
    assert dsp_floorplan((), [2]) == [[None, None]]
    with pytest.raises(ValueError, match="X<x>/Y<y>/<bel>, not 'MULT18_0'"):
        dsp_floorplan(("MULT18_0",), [1])


def test_pe_places_its_ecp5_multipliers_at_their_sites():
    platform = FamilyPlatform(ECP5, TARGETS["ecp5-85k"], "auto",
                              TARGETS["ecp5-85k"].dsp_sites)
    sites = platform.multiplier_sites([2])[0]
    text = verilog.convert(PE(**PE_PARAMS, sites=sites), name="pe", emit_src=False,
                           platform=platform)
    assert [f'(* BEL = "{site}" *)' in text for site in sites] == [True, True]
    assert "BEL" not in verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                                        platform=FamilyPlatform(ECP5))
    with refused_elaboratables(), pytest.raises(
            ValueError, match=r"one place per hard multiplier \(1\), not 2"):
        PE(**PE_PARAMS, lut_lanes=1, sites=sites)
    # The MAC array hands each PE its own hard multipliers' sites: 8 + 4 of them.
    array = verilog.convert(MACArray(Config(lut_multipliers=4)), name="mac", emit_src=False,
                            platform=platform)
    plan = dsp_floorplan(TARGETS["ecp5-85k"].dsp_sites, [8, 4])
    assert array.count("(* BEL = ") == 12
    assert all(f'(* BEL = "{site}" *)' in array for group in plan for site in group)


def test_pe_takes_the_ice40_multiplier():
    # An SB_MAC16 with its input registers and its 16 x 16 product register, the registers
    # the flow's DSP register check asks for (DESIGN §12.4).
    text = verilog.convert(PE(**PE_PARAMS), name="pe", emit_src=False,
                           platform=FamilyPlatform(ICE40))
    assert text.count("SB_MAC16 #(") == 2 and "lane1_product" not in text
    for param in ("A_REG", "B_REG", "PIPELINE_16x16_MULT_REG2", "A_SIGNED", "B_SIGNED"):
        assert text.count(f".{param}(32'd1)") == 2, param
    assert text.count(".TOPOUTPUT_SELECT(32'd3)") == 2


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


def test_registered_memory_hook():
    # The ECP5 instantiates DP16KD with the output register where Yosys would put the memory
    # in block RAM (the fit check's own cost model), in the same number of blocks.
    bank = unused(ECP5.get_registered_memory(8, 256))
    assert isinstance(bank, ECP5BlockRam) and bank.read_latency == 2 and bank.blocks == 1
    wide = unused(ECP5.get_registered_memory(12, 1500))  # two 9 x 2048 side by side
    assert (wide.across, wide.deep) == (2, 1)
    deep = unused(ECP5.get_registered_memory(9, 3000))  # two 9 x 2048 stacked
    assert (deep.across, deep.deep) == (1, 2)
    assert memory_choice(ECP5.bram, True, 256, 8) == ("block", 1)
    # LUT RAM (small, or --ram lutram): the caller's fabric register after its own memory.
    assert memory_choice(ECP5.bram, True, 16, 8)[0] == "lutram"
    assert ECP5.get_registered_memory(8, 16) is None
    assert ECP5.get_registered_memory(8, 256, "lutram") is None
    assert unused(ECP5.get_registered_memory(8, 64, "block")).blocks == 1
    assert ECP5.get_registered_memory(8, 16, "block") is None  # 128 flip-flops are cheaper
    # The 36-bit (PDPW16KD) mode stays with Yosys' mapping.
    assert ECP5.get_registered_memory(36, 512, "block") is None
    assert ICE40.get_registered_memory(8, 256) is None
    assert FamilyPlatform(ECP5, ram="lutram").get_registered_memory(8, 256) is None
    with pytest.raises(ValueError, match="ram must be one of auto, lutram, block, not 'bram'"):
        FamilyPlatform(ECP5, ram="bram")


def test_vector_banks_take_the_registered_memory():
    text = verilog.convert(VectorBanks(lanes=2, width=8, depth=256), name="banks",
                           emit_src=False, platform=FamilyPlatform(ECP5))
    assert text.count("DP16KD #(") == 2 and text.count('.REGMODE_B("OUTREG")') == 2
    plain = verilog.convert(VectorBanks(lanes=2, width=8, depth=256), name="banks",
                            emit_src=False)
    assert "DP16KD" not in plain and "lane1_word" in plain
    assert verilog.convert(VectorBanks(lanes=2, width=8, depth=256), name="banks",
                           emit_src=False, platform=FamilyPlatform(ICE40)) == plain

    class Slow:
        def get_registered_memory(self, width, depth):
            bank = unused(ECP5BlockRam(width=width, depth=depth))
            bank.read_latency = 1
            return bank

    with pytest.raises(ValueError, match="registered memory must have read_latency 2, not 1"):
        verilog.convert(VectorBanks(lanes=1, width=8, depth=256), name="banks",
                        emit_src=False, platform=Slow())


@pytest.mark.parametrize("board", list(BOARDS))
def test_board_platform_gets_the_hooks(board):
    b = BOARDS[board]
    platform_class = b.platform_class()
    hooked = with_hooks(platform_class, b.target_info.family)()
    assert isinstance(hooked, platform_class) and hooked.fpga_family is b.target_info.family
    mult = unused(hooked.get_multiplier(8, 8))
    expected = ECP5Multiplier if b.target_info.family is ECP5 else ICE40Multiplier
    assert isinstance(mult, expected)
