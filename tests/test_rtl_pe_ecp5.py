"""The PE as built for the ECP5 (multipliers as MULT18X18D instances with their own
registers, from the ECP5 family's ``get_multiplier`` platform hook) under Verilator with a
behavioural model of the block, against NumPy; and the generic PE through the same
testbench."""

import pytest
from amaranth.back import verilog

from bbsparse.hdl.pe import PE
from bbsparse.synth.families import ECP5, FamilyPlatform
from bbsparse.tb.cocotb_run import Design, run_design
from bbsparse.tb.ecp5_models import MULT18X18D_MODEL

CASES = {
    "lanes4-8x8": dict(lanes=4, weight_width=8, act_width=8, acc_width=20),
    # One fabric register in front of each MULT18X18D's operands (operand_registers).
    "lanes3-5x7-wraps": dict(lanes=3, weight_width=5, act_width=7, acc_width=12,
                             operand_registers=1),
    "lanes2-18x18": dict(lanes=2, weight_width=18, act_width=18, acc_width=40),
}


@pytest.mark.parametrize("platform", ["ecp5", "generic"])
@pytest.mark.parametrize("name", list(CASES))
def test_pe(name, platform):
    params = CASES[name]
    pe = PE(**params)
    if platform == "ecp5":
        text = verilog.convert(pe, name="pe_ecp5", emit_src=False,
                               platform=FamilyPlatform(ECP5))
        assert "MULT18X18D" in text  # the instance really is in this build
        text += MULT18X18D_MODEL
    else:
        text = verilog.convert(pe, name="pe_ecp5", emit_src=False)
        assert "MULT18X18D" not in text
    design = Design("pe_ecp5", text, "bbsparse.tb.pe_tb", f"PE {name} ({platform})")
    run_design(design, {**params, "seed": 11 + len(name), "rows": 60}, ["pe_rows"],
               name=f"{name}-{platform}")
