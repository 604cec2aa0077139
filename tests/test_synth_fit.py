"""The pre-tool fit check of `bbsparse synth` (synth/targets.py) and the --fit search.

No tool runs here: these are the checks that refuse a configuration before Yosys would
silently map more multipliers or memories than the device has.
"""

import dataclasses
import re
from pathlib import Path

import pytest

from bbsparse.cli import main
from bbsparse.golden.config import Config, load_config
from bbsparse.synth.flow import default_folder, fit_search
from bbsparse.synth.targets import (
    TARGETS,
    FitError,
    dsps_per_multiplier,
    fit_check,
    memory_mapping,
    require_fit,
)

UP5K = TARGETS["ice40-up5k"]
ECP5_25K = TARGETS["ecp5-25k"]
CONFIGS = Path(__file__).parent.parent / "configs"


# -- DSP blocks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, ww, aw, expected", [
    # One block per multiplier up to the DSP width (measured with Yosys 0.70).
    ("ice40-up5k", 8, 8, (1, True)),
    ("ice40-up5k", 16, 16, (1, True)),
    ("ecp5-25k", 18, 18, (1, True)),
    ("ecp5-25k", 2, 2, (1, True)),
    # Too narrow: Yosys builds them from LUTs (iCE40: product under 11 bits, or a 1-bit operand).
    ("ice40-up5k", 4, 6, (0, True)),
    ("ice40-up5k", 5, 6, (1, True)),
    ("ecp5-25k", 1, 8, (0, True)),
    # Wider than the block: on the ECP5 an upper bound, partial products of width - 1 bits;
    # on the iCE40 LUTs (synth_ice40 runs without -dsp: nothing splits the product).
    ("ice40-up5k", 17, 8, (0, True)),
    ("ice40-up5k", 24, 24, (0, True)),
    ("ecp5-25k", 24, 24, (4, False)),
])
def test_dsps_per_multiplier(name, ww, aw, expected):
    assert dsps_per_multiplier(TARGETS[name], ww, aw) == expected


def test_too_many_multipliers_names_the_figure_and_the_limit():
    # The default core (8 lanes x 2 PEs) has twice the UP5K's multipliers.
    with pytest.raises(FitError) as info:
        require_fit(UP5K, Config())
    message = str(info.value)
    assert "16 multipliers" in message and "16 SB_MAC16" in message
    assert "the iCE40UP5K has 8" in message
    # ... and 29 on the 25k's 28.
    with pytest.raises(FitError, match=r"29 multipliers .* 29 MULT18X18D .* LFE5U-25F has 28"):
        require_fit(ECP5_25K, Config(lanes=29, pes=1, bank_size=4, cols=128))


def test_vector_memory_beyond_block_ram_names_the_figure_and_the_limit():
    # cols 8192: each lane memory holds 2 x 1024 words of 8 bits = 4 SB_RAM40_4K (2048 x 2),
    # 8 lanes -> 32 blocks: over the UP5K's 30. The y FIFO takes none: rows of 128 beats
    # need 2 credits, a FIFO of one word in flip-flops (DESIGN §14.3).
    config = Config(lanes=8, pes=1, cols=8192)
    report = fit_check(UP5K, config)
    assert report.dsps == 8 and report.brams == 32
    assert [m.kind for m in report.memories if m.role == "y FIFO"] == ["logic"]
    with pytest.raises(FitError) as info:
        require_fit(UP5K, config)
    message = str(info.value)
    assert "32 SB_RAM40_4K" in message and "the iCE40UP5K has 30" in message
    assert "vector banks: 8 x 2048 words x 8 bits = 32 (4 each)" in message
    assert "multipliers" not in message  # only the broken limit is named


def test_both_limits_are_reported_at_once():
    with pytest.raises(FitError) as info:
        require_fit(UP5K, Config(lanes=8, pes=2, cols=8192))
    assert "SB_MAC16" in str(info.value) and "SB_RAM40_4K" in str(info.value)


def test_lutram_beyond_the_device_is_refused():
    # A made-up part with almost no LUT RAM: rows of one beat (64 columns) keep 15 words in
    # the y FIFO (16 credits) and 16 vector banks of 16 words, 42 LUT-RAM units.
    tiny = dataclasses.replace(ECP5_25K, lutram_units=40)
    with pytest.raises(FitError, match=r"42 16x4 LUT-RAM units .* has 40"):
        require_fit(tiny, Config(cols=64))


def test_default_configuration_fits_the_ecp5_and_reports_its_use():
    report = require_fit(ECP5_25K, Config())
    # The y FIFO: rows of 16 beats, 2 credits, one word in flip-flops (DESIGN §14.3).
    assert (report.dsps, report.brams, report.lutram_units) == (16, 16, 0)
    figures = report.to_dict()
    assert figures["fits"] and figures["dsps"] == {"needed": 16, "available": 28,
                                                   "cell": "MULT18X18D"}
    assert figures["weight_memory_bits"] == 0  # weights stream; the core stores none


# -- where Yosys puts a memory -----------------------------------------------------------------

# (width, depth) -> (kind, units) as Yosys 0.70 maps an Amaranth memory with one write port
# and one synchronous read port with enable (probed with synth_* -run :map_ffs); the slow
# test in test_synth_flow.py re-checks a subset against the installed Yosys.
YOSYS_MEMORIES = {
    "ecp5-25k": {
        (8, 16): ("lutram", 2), (8, 128): ("lutram", 16), (8, 192): ("block", 1),
        (8, 256): ("block", 1), (4, 256): ("lutram", 16), (16, 64): ("lutram", 16),
        (16, 128): ("block", 1), (24, 64): ("lutram", 24), (48, 32): ("lutram", 24),
        (24, 16): ("lutram", 6), (47, 13): ("lutram", 12), (2, 1024): ("block", 1),
        (8, 2048): ("block", 1), (8, 4096): ("block", 2),
    },
    "ice40-up5k": {
        (8, 16): ("block", 1), (8, 256): ("block", 1), (8, 512): ("block", 1),
        (24, 16): ("block", 2), (48, 32): ("block", 3), (47, 13): ("block", 3),
        (8, 2048): ("block", 4), (8, 4096): ("block", 8), (2, 1024): ("block", 1),
    },
}


@pytest.mark.parametrize("name, shape", [(name, shape) for name, shapes in YOSYS_MEMORIES.items()
                                         for shape in shapes])
def test_memory_mapping_matches_yosys(name, shape):
    width, depth = shape
    use = memory_mapping(TARGETS[name], "m", 1, depth, width)
    assert (use.kind, use.units_each) == YOSYS_MEMORIES[name][shape]


# -- the largest configuration that fits --------------------------------------------------------


@pytest.mark.parametrize("name, lanes, pes", [
    ("ice40-up5k", 8, 1),   # 8/8 SB_MAC16
    ("ecp5-25k", 4, 7),     # 28/28 MULT18X18D; 128 banks a row: 4 lanes divide them
    ("ecp5-45k", 8, 9),     # 72/72
    ("ecp5-85k", 4, 39),    # 156/156
])
def test_fit_search_fills_every_dsp(name, lanes, pes):
    # DSP blocks only, the default; "mix" adds LUT lanes beyond them (test_lut_lanes.py).
    target = TARGETS[name]
    best = fit_search(target, Config())[0]
    assert (best["lanes"], best["pes"]) == (lanes, pes)
    assert best["dsps"] == target.dsps and best["lane_efficiency"] == 1.0
    assert not fit_check(target, best["_config"]).problems()


def test_fit_search_is_limited_by_memory_when_memory_runs_out():
    # Rows of 7168 columns: with 8 lanes each lane memory holds 2 x 896 words = 4 blocks,
    # 32 > 30; with 7 lanes (1024 words each, still 4 blocks) it is 28 (the y FIFO of such
    # long rows is one word in flip-flops). Block RAM, not the 8 DSPs, limits the UP5K to 7
    # multipliers.
    candidates = fit_search(UP5K, Config(cols=7168), multipliers="dsp")
    best = candidates[0]
    assert (best["lanes"], best["pes"], best["brams"]) == (7, 1, 28)
    assert all(c["multipliers"] <= 7 for c in candidates)


def test_fit_search_says_when_nothing_fits():
    # One PE keeps two copies of x: 2 x 16384 x 8 bits = 256 kbit, over the UP5K's 120.
    with pytest.raises(FitError, match=r"even 1 lane x 1 PE .* 64 SB_RAM40_4K .* has 30"):
        fit_search(UP5K, Config(cols=16384))


def test_fit_search_refuses_multipliers_that_need_no_dsp():
    with pytest.raises(FitError, match="do not map to SB_MAC16"):
        fit_search(UP5K, Config(weight_width=4, act_width=4))


# -- the command line, without tools -----------------------------------------------------------


def test_cli_refuses_before_running_any_tool(tmp_path, capsys):
    out = tmp_path / "synth"
    # The UP5K's default core (8 x 1) with a second PE: 16 multipliers.
    assert main(["synth", "--target", "ice40-up5k", "--set", "pes=2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bbsparse: error: does not fit the ice40-up5k")
    assert "16 SB_MAC16" in err and "has 8" in err and "\n" not in err
    # ... and says the way out.
    assert err.endswith("; use --fit, or the ice40-up5k's default core, 8 lanes x 1 PE "
                        "(leave out --set)")
    assert not out.exists()


def test_cli_without_config_builds_the_targets_default_core(capsys):
    assert main(["synth", "--target", "ice40-up5k", "--check"]) == 0
    assert "ice40-up5k: 8 lanes x 1 PE fits: 8/8 SB_MAC16" in capsys.readouterr().out
    assert main(["synth", "--target", "ecp5-25k", "--check"]) == 0
    assert "ecp5-25k: 8 lanes x 2 PEs fits: 16/28 MULT18X18D" in capsys.readouterr().out
    # --set applies over the target's default; the derived widths follow the new values.
    assert main(["synth", "--target", "ice40-up5k", "--check", "--set", "lanes=4"]) == 0
    assert "4 lanes x 1 PE fits: 4/8 SB_MAC16" in capsys.readouterr().out
    # With --config, the file is the configuration (the default 8 x 2 does not fit).
    assert main(["synth", "--target", "ice40-up5k", "--check", "--config",
                 str(CONFIGS / "default.toml")]) == 2
    assert capsys.readouterr().err.strip().endswith("(leave out --config)")


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_default_core_fits(name):
    target = TARGETS[name]
    report = require_fit(target, target.default_config())
    assert report.dsps <= target.dsps


def test_up5k_default_is_configs_ice40_up5k_toml():
    # The Makefile and the README name the file; the target's default must be the same core.
    assert UP5K.default_config() == load_config(CONFIGS / "ice40-up5k.toml")
    assert ECP5_25K.default_config() == Config() == load_config(CONFIGS / "default.toml")


def test_default_folder_names_target_and_configuration():
    assert default_folder(UP5K, UP5K.default_config()) == Path("build/synth/ice40-up5k-8x1")
    assert default_folder(ECP5_25K, Config(lanes=16, pes=1)) == Path(
        "build/synth/ecp5-25k-16x1")
    assert default_folder(ECP5_25K, Config(), "lutram") == Path("build/synth/ecp5-25k-8x2-lutram")
    # Other parameters than lanes and pes: a hash of the configuration, one per configuration.
    wide = default_folder(ECP5_25K, Config(cols=2048))
    assert re.fullmatch(r"ecp5-25k-8x2-[0-9a-f]{8}", wide.name)
    assert wide != default_folder(ECP5_25K, Config(cols=4096))


def test_cli_check_and_fit_run_no_tool(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--target", "ecp5-85k", "--fit", "--check", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 lanes x 39 PEs = 156 multipliers, 156/156 MULT18X18D" in text
    # The ECP5 fit's own micro-architecture (Target.fit_core), unless --set gives it.
    assert ("156/208 DP16KD, product_registers 2, operand_registers 2, "
            "broadcast_registers 3;") in text
    assert not out.exists()
    assert main(["synth", "--target", "ecp5-85k", "--fit", "--check", "--set",
                 "product_registers=0"]) == 0
    text = capsys.readouterr().out
    assert "product_registers" not in text and "operand_registers 2, broadcast_registers 3;" \
        in text
    assert main(["synth", "--target", "ice40-up5k", "--fit", "--check"]) == 0
    assert "product_registers" not in capsys.readouterr().out
    # --fit-multipliers mix: every DSP block, then LUT lanes (DESIGN §12.8).
    assert main(["synth", "--target", "ecp5-85k", "--fit", "--fit-multipliers", "mix",
                 "--check", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "128 lanes x 3 PEs = 384 multipliers, 156/156 MULT18X18D" in text
    assert "228 LUT multipliers" in text
    # The mix's own micro-architecture over the fit's (Target.fit_core_mix): no operand
    # register, two broadcast and two result registers on the 85k (one broadcast register
    # on the 25k); --set still wins.
    assert "product_registers 2, broadcast_registers 2, result_registers 2;" in text
    assert "operand_registers" not in text
    assert not out.exists()
    assert main(["synth", "--target", "ecp5-85k", "--fit", "--fit-multipliers", "mix",
                 "--check", "--set", "operand_registers=1"]) == 0
    assert "product_registers 2, operand_registers 1, broadcast_registers 2, " \
        "result_registers 2;" in capsys.readouterr().out
    assert main(["synth", "--target", "ecp5-25k", "--fit", "--fit-multipliers", "mix",
                 "--check"]) == 0
    assert "product_registers 2, broadcast_registers 1;" in capsys.readouterr().out


def test_cli_rejects_unknown_target(capsys):
    assert main(["synth", "--target", "ecp5-12k"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_ram_policy_moves_the_memories():
    # --ram lutram (synth_ecp5 -nobram): the 16 vector banks of 256 x 8 leave the EBRs for
    # 32 LUT-RAM units each; --ram block keeps even a small y FIFO out of LUT RAM (rows of
    # one beat, 64 columns: 15 words of 39 bits in a slice of 19 and one of 20 bits per PE,
    # 5 units or an EBR each).
    lutram = require_fit(ECP5_25K, Config(), "lutram")
    assert (lutram.brams, lutram.lutram_units) == (0, 16 * 32)
    short_rows = Config(cols=64)
    assert require_fit(ECP5_25K, short_rows, "lutram").lutram_units == 16 * 2 + 10
    block = require_fit(ECP5_25K, short_rows, "block")
    fifo = [(m.kind, m.units_each) for m in block.memories if m.role == "y FIFO"]
    assert block.lutram_units == 0 and fifo == [("block", 1), ("block", 1)]
    assert memory_mapping(ECP5_25K, "m", 1, 256, 8, "lutram").kind == "lutram"
    with pytest.raises(FitError, match="the iCE40UP5K has no LUT RAM"):
        fit_check(UP5K, Config(lanes=8, pes=1), "lutram")
