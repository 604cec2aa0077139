"""The scatter unit in the Amaranth simulator against golden/scatter.py: accumulations and
plain writes, banked and crossbar, adversarial indices, random stalls, then a read-out."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden.scatter import scatter_banked, scatter_crossbar
from bbsparse.hdl.scatter import Scatter
from bbsparse.tb.sim_stream import pauses, stream_get, stream_put


def run_scatter(dut, rows, values, masks, depth, seed, req_idle=0.0, rd_stall=0.0):
    """Stream update rows (idle cycles before each with probability `req_idle`), then read
    every address back (ready low with probability `rd_stall`)."""
    lanes = len(rows[0])
    words = []
    state = {"stalls": None}

    async def source(ctx):
        idle = pauses(req_idle, f"{seed}/req")
        for row, vals, mask in zip(rows, values, masks, strict=True):
            request = {"index": [int(index) for index in row],
                       "value": [int(value) for value in vals],
                       "mask": int(sum(int(b) << i for i, b in enumerate(mask)))}
            await stream_put(ctx, dut.req, request, idle=idle)
        # Read every address back; the unit holds read-outs until its updates are done.
        for addr in range(depth):
            await stream_put(ctx, dut.rd_req, addr)
        # Read-outs wait for the updates, so every arbitration cycle has been counted.
        state["stalls"] = ctx.get(dut.stall_cycles)

    async def sink(ctx):
        stall = pauses(rd_stall, f"{seed}/rd")
        while len(words) < depth:
            payload = await stream_get(ctx, dut.rd_resp, stall=stall)
            words.append([int(payload[i]) for i in range(lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (60 * len(rows) * lanes + 40 * depth + 1000))
    assert len(words) == depth, f"seed {seed}: only {len(words)} of {depth} read-out beats " \
                                f"came back"
    return np.array(words), state["stalls"]


def adversarial(lanes, depth, count, rng):
    size = lanes * depth
    rows = [[3 * lanes + 1] * lanes,                       # every lane on one address
            [3 * lanes + 1] * lanes,                       # ... again, back to back
            [lane * lanes for lane in range(lanes)],       # one bank, many addresses
            list(rng.permutation(lanes) + 2 * lanes)]      # a permutation
    rows += [list(rng.integers(0, size, lanes)) for _ in range(count)]
    rows += [[7] * lanes] * 3                              # a hot address at the end
    return np.array(rows) % size


@pytest.mark.parametrize("accumulate", [True, False], ids=["accumulate", "write"])
@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "stalled"])
def test_crossbar_scatter_matches_golden(accumulate, lanes, stalls):
    depth, width = 8, 12
    seed = lanes * 7 + accumulate
    rng = np.random.default_rng(seed)
    rows = adversarial(lanes, depth, 25, rng)
    values = rng.integers(0, 1 << width, size=rows.shape)
    masks = rng.random(rows.shape) < 0.9
    masks[:3] = True
    dut = Scatter(lanes=lanes, width=width, depth=depth, mode="crossbar", accumulate=accumulate)
    words, stalls_counted = run_scatter(dut, rows, values, masks, depth, seed, *stalls)
    memory, _, golden_stalls = scatter_crossbar(np.zeros(lanes * depth, np.int64), rows, values,
                                               lanes, accumulate, masks)
    # Read-out beat t holds address t of every bank: flat index t*lanes + bank.
    assert words.reshape(-1).tolist() == (memory % (1 << width)).tolist(), f"seed {seed}"
    assert stalls_counted == golden_stalls, f"seed {seed}"


@pytest.mark.parametrize("accumulate", [True, False], ids=["accumulate", "write"])
def test_banked_scatter_matches_golden(accumulate):
    lanes, depth, width, seed = 4, 8, 10, 3
    rng = np.random.default_rng(seed)
    addrs = rng.integers(0, depth, size=(40, lanes))
    addrs[5:9] = 2  # the same address of every bank, four rows running
    values = rng.integers(0, 1 << width, size=addrs.shape)
    dut = Scatter(lanes=lanes, width=width, depth=depth, mode="banked", accumulate=accumulate)
    words, stalls = run_scatter(dut, addrs, values, np.ones(addrs.shape, bool), depth, seed,
                                0.2, 0.3)
    banks = scatter_banked(np.zeros((lanes, depth), np.int64), addrs, values, accumulate)
    assert words.tolist() == (banks.T % (1 << width)).tolist(), f"seed {seed}"
    assert stalls == 0, f"seed {seed}"


def test_scatter_rejects():
    with pytest.raises(ValueError, match="lanes must be a power of two in crossbar mode"):
        Scatter(lanes=3, width=8, depth=4)
    with pytest.raises(ValueError, match="accumulate must be a boolean, not 1"):
        Scatter(lanes=2, width=8, depth=4, accumulate=1)
