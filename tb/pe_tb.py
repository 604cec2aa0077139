"""cocotb test of a PE under Verilator: rows of random beats, with bubbles, against NumPy.

Used for the ECP5 build of the PE, whose multipliers are MULT18X18D instances (the ECP5
family's answer to the PE's ``get_multiplier`` platform hook, simulated with
tb/ecp5_models.py): it checks the instance's wiring, signedness and latency against the same
arithmetic the generic PE does.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .cocotb_run import PARAMS_ENV


def _pack(values, width):
    word = 0
    for i, value in enumerate(values):
        word |= (value & ((1 << width) - 1)) << (i * width)
    return word


def _wrap(value, width):
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


@cocotb.test()
async def pe_rows(dut):
    params = json.loads(os.environ[PARAMS_ENV])
    lanes, ww, aw, acc_width = (params[k] for k in ("lanes", "weight_width", "act_width",
                                                    "acc_width"))
    rng = random.Random(params["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.valid.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0

    beats, expected = [], []
    w_lo, w_hi = -(1 << (ww - 1)), (1 << (ww - 1)) - 1
    x_lo, x_hi = -(1 << (aw - 1)), (1 << (aw - 1)) - 1
    for row in range(params["rows"]):
        length = rng.randint(1, 4)
        total = 0
        for k in range(length):
            # Rows at the extremes of both ranges first: the sign handling of the product.
            if row < 2:
                x = [x_lo] * lanes
                w = [w_lo if row == 0 else w_hi] * lanes
            else:
                x = [rng.randint(x_lo, x_hi) for _ in range(lanes)]
                w = [rng.randint(w_lo, w_hi) for _ in range(lanes)]
            total += sum(a * b for a, b in zip(x, w, strict=True))
            beats.append((x, w, k == 0, k == length - 1))
            if rng.random() < 0.3:
                beats.append(None)
        expected.append(_wrap(total, acc_width))

    got = []

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            if dut.acc_valid.value:
                got.append(dut.acc.value.to_signed())

    cocotb.start_soon(monitor())
    for beat in beats:
        if beat is None:
            dut.valid.value = 0
        else:
            x, w, first, last = beat
            dut.x.value = _pack(x, aw)
            dut.weight.value = _pack(w, ww)
            dut.valid.value = 1
            dut.first.value = int(first)
            dut.last.value = int(last)
        await RisingEdge(dut.clk)
    dut.valid.value = 0
    await ClockCycles(dut.clk, 20)
    assert len(got) == len(expected), (f"seed {params['seed']}: {len(got)} rows came out, "
                                       f"{len(expected)} expected")
    wrong = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert not wrong, (f"seed {params['seed']}: {len(wrong)} rows differ, first row "
                       f"{wrong[0]}: {got[wrong[0]]} instead of {expected[wrong[0]]}")
