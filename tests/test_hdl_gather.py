"""The gather unit in the Amaranth simulator against golden/gather.py, under random stalls
and adversarial index patterns."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden.gather import crossbar_schedule, gather_banked, schedule_cycles
from bbsparse.hdl.gather import Gather
from bbsparse.tb.sim_stream import pauses, stream_get, stream_put


def run_gather(dut, contents, rows, masks, sides, seed, req_idle=0.0, resp_stall=0.0):
    """Load `contents` (depth, lanes), stream request rows (idle cycles before each with
    probability `req_idle`), collect responses (ready low with probability `resp_stall`)."""
    responses = []
    cycles = {"stalls": None}

    async def loader_and_source(ctx):
        ctx.set(dut.w_en, 1)
        for addr, words in enumerate(contents):
            ctx.set(dut.w_addr, addr)
            for lane, word in enumerate(words):
                ctx.set(dut.w_data[lane], int(word))
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        idle = pauses(req_idle, f"{seed}/req")
        for row, mask, side in zip(rows, masks, sides, strict=True):
            request = {"index": [int(index) for index in row],
                       "mask": int(sum(int(b) << i for i, b in enumerate(mask))),
                       "side": int(side)}
            await stream_put(ctx, dut.req, request, idle=idle)

    async def sink(ctx):
        stall = pauses(resp_stall, f"{seed}/resp")
        while len(responses) < len(rows):
            payload = await stream_get(ctx, dut.resp, stall=stall)
            responses.append(([int(payload.data[i]) for i in range(len(rows[0]))],
                              int(payload.side)))
        cycles["stalls"] = ctx.get(dut.stall_cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(loader_and_source)
    sim.add_testbench(sink)
    # A bound on simulated time, so that a hang fails instead of running forever.
    sim.run_until(1e-8 * (len(contents) + 40 * len(rows) * len(rows[0]) + 1000))
    assert len(responses) == len(rows), \
        f"seed {seed}: only {len(responses)} of {len(rows)} rows came back"
    return responses, cycles["stalls"]


def patterns(lanes, depth, count, rng):
    """Adversarial rows: all lanes on one bank, all on one address, a permutation of the
    banks, then random rows."""
    size = lanes * depth
    rows = [
        [5 * lanes + 2] * lanes,                                  # one address
        [lane * lanes + 1 for lane in range(lanes)],             # one bank, many addresses
        list(rng.permutation(lanes) + lanes * 3),                # a permutation: no conflict
        [(lane * lanes + lane) % size for lane in range(lanes)], # diagonal
    ]
    rows += [list(rng.integers(0, size, lanes)) for _ in range(count)]
    return np.array(rows)


@pytest.mark.parametrize("lanes, copies", [(1, 1), (2, 1), (4, 2), (8, 1)])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "stalled"])
def test_crossbar_gather_matches_golden(lanes, copies, stalls):
    depth, width, seed = 16, 8, lanes * 10 + copies
    rng = np.random.default_rng(seed)
    contents = rng.integers(0, 256, size=(depth, lanes))
    flat = contents.reshape(-1)  # index i lives in bank i % lanes, address i // lanes
    per_copy = [patterns(lanes, depth, 30, rng) for _ in range(copies)]
    rows = np.concatenate(per_copy, axis=1)
    masks = rng.random(rows.shape) < 0.85
    masks[:4] = True
    sides = rng.integers(0, 2, len(rows))
    dut = Gather(lanes=lanes, width=width, depth=depth, mode="crossbar", copies=copies)
    responses, stalls_counted = run_gather(dut, contents, rows, masks, sides, seed, *stalls)

    expected = np.where(masks, flat[rows], 0)
    assert [r[0] for r in responses] == expected.tolist(), f"seed {seed}"
    assert [r[1] for r in responses] == sides.tolist(), f"seed {seed}"
    # Copies run in lockstep: a row takes as long as its slowest copy.
    row_cycles = np.max([
        np.diff(np.concatenate([[0], np.max(crossbar_schedule(
            rows[:, c * lanes:(c + 1) * lanes], lanes,
            masks[:, c * lanes:(c + 1) * lanes]), axis=1) + 1]))
        for c in range(copies)], axis=0)
    # Per copy the golden schedule gives absolute cycles; turn them into per-row lengths.
    expected_stalls = int(np.sum(row_cycles - 1))
    assert stalls_counted == expected_stalls, f"seed {seed}"


def test_crossbar_stall_count_adversarial():
    """All lanes on one bank: `lanes` cycles a row; a permutation: one cycle a row."""
    lanes, depth = 4, 8
    contents = np.arange(depth * lanes).reshape(depth, lanes)
    one_bank = np.array([[lane * lanes for lane in range(lanes)]] * 5)
    permutation = np.array([[3, 0, 2, 1]] * 5)
    for rows, stalls in ((one_bank, 5 * (lanes - 1)), (permutation, 0)):
        dut = Gather(lanes=lanes, width=8, depth=depth)
        masks = np.ones(rows.shape, bool)
        responses, counted = run_gather(dut, contents, rows, masks, [0] * len(rows), 1)
        assert counted == stalls
        assert schedule_cycles(crossbar_schedule(rows, lanes))[1] == stalls
        assert [r[0] for r in responses] == contents.reshape(-1)[rows].tolist()


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "stalled"])
def test_banked_gather_matches_golden(stalls):
    lanes, depth, seed = 4, 16, 5
    rng = np.random.default_rng(seed)
    contents = rng.integers(0, 256, size=(depth, lanes))
    addrs = rng.integers(0, depth, size=(40, lanes))
    masks = np.ones(addrs.shape, bool)
    dut = Gather(lanes=lanes, width=8, depth=depth, mode="banked")
    responses, counted = run_gather(dut, contents, addrs, masks, [1] * 40, seed, *stalls)
    assert [r[0] for r in responses] == gather_banked(contents.T, addrs).tolist()
    assert counted == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(lanes=3, width=8, depth=4), "lanes must be a power of two in crossbar mode"),
    (dict(lanes=4, width=8, depth=4, mode="mesh"), "mode must be one of banked, crossbar"),
    (dict(lanes=4, width=0, depth=4), "width must be a positive integer, not 0"),
])
def test_gather_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Gather(**kwargs)
