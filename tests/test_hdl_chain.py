"""Two layers chained on chip (hdl/chain.py) against the golden model, in the Amaranth
simulator, with random idle cycles on every source and back-pressure on y."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden import csb, prune, spmv
from bbsparse.golden.config import Config
from bbsparse.hdl.chain import Chain


async def drive(ctx, dut, prefix, beats, rng, idle):
    """Send (tdata, tlast) beats on an AXI4-Stream port, idling at random."""
    port = getattr(dut, prefix)
    valid, ready = port.tvalid, port.tready
    for data, last in beats:
        while rng.random() < idle:
            ctx.set(valid, 0)
            await ctx.tick()
        ctx.set(port.tdata, data)
        ctx.set(port.tlast, last)
        ctx.set(valid, 1)
        await ctx.tick().until(ready)
    ctx.set(valid, 0)


def frames(words, per_frame):
    return [(w, int((i + 1) % per_frame == 0)) for i, w in enumerate(words)]


@pytest.mark.parametrize("case", [
    # layer 1: 24 -> 20 rows (pes 3 does not divide 20); layer 2: 20 columns in banks of 4
    (dict(lanes=2, pes=3, bank_size=4, nnz_per_bank=2, cols=24, out_width=8, out_shift=6,
          relu=True),
     dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=20), 20, 9),
    # pes larger than layer 2's bank: more than one bank advances per y beat
    (dict(lanes=4, pes=3, bank_size=2, nnz_per_bank=1, cols=16, out_width=8, out_shift=5),
     dict(lanes=4, pes=1, bank_size=2, nnz_per_bank=2, cols=18), 18, 5),
], ids=["pes3-bank4", "pes3-bank2"])
def test_two_layers_match_golden(case):
    one_params, two_params, rows1, rows2 = case
    one, two = Config(**one_params), Config(**two_params)
    seed = rows1 * 31 + rows2
    rng = np.random.default_rng(seed)
    W1 = prune.prune_bbs(rng.integers(-128, 128, (rows1, one.cols)), one.bank_size,
                         one.nnz_per_bank)
    W2 = prune.prune_bbs(rng.integers(-128, 128, (rows2, two.cols)), two.bank_size,
                         two.nnz_per_bank)
    X = rng.integers(-128, 128, (3, one.cols))
    expected = spmv.spmv(two, W2, spmv.spmv(one, W1, X))

    x_words = csb.x_beat_ints(one, csb.pack_x(one, X))
    w1_words = csb.w_beat_ints(one, *csb.pack_w(one, W1))
    w2_words = csb.w_beat_ints(two, *csb.pack_w(two, W2))
    dut = Chain(one, two)
    got = []

    async def x_source(ctx):
        await drive(ctx, dut, "s_axis_x", frames(x_words, one.x_beats), rng, 0.2)

    async def w1_source(ctx):
        await drive(ctx, dut, "s_axis_w1", frames(w1_words * 3, len(w1_words)), rng, 0.2)

    async def w2_source(ctx):
        await drive(ctx, dut, "s_axis_w2", frames(w2_words * 3, len(w2_words)), rng, 0.2)

    async def y_sink(ctx):
        groups = two.row_groups(rows2)
        while len(got) < 3 * groups:
            ready = int(rng.random() > 0.4)
            ctx.set(dut.m_axis_y.tready, ready)
            _, _, valid, data, last = await ctx.tick().sample(
                dut.m_axis_y.tvalid, dut.m_axis_y.tdata, dut.m_axis_y.tlast)
            if ready and valid:
                got.append((data, last))
        assert not ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (x_source, w1_source, w2_source, y_sink):
        sim.add_testbench(bench)
    sim.run_until(1e-8 * 20000)
    groups = two.row_groups(rows2)
    assert len(got) == 3 * groups, f"seed {seed}: {len(got)} of {3 * groups} y beats"
    Y = csb.unpack_y(two, [d for d, _ in got], rows2, batch=3)
    assert np.array_equal(Y, expected), f"seed {seed}"
    assert [last for _, last in got] == [int((i + 1) % groups == 0) for i in range(3 * groups)]


def test_chain_rejects():
    with pytest.raises(ValueError, match=r"out_width \(12\) must equal the second layer's "
                                         r"act_width \(8\)"):
        Chain(Config(cols=16, bank_size=4, lanes=2, out_width=12),
              Config(cols=16, bank_size=4, lanes=2))
    with pytest.raises(ValueError, match=r"pes \(3\) must not exceed the second layer's "
                                         r"lanes \(2\)"):
        Chain(Config(cols=16, bank_size=4, lanes=2, pes=3, out_width=8),
              Config(cols=16, bank_size=4, lanes=2))
