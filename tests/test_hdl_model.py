"""The model core (hdl/model.py): every layer of an integer model on one BBS core, in the
Amaranth simulator against the golden forward pass, with random idle cycles on x and
back-pressure on y."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from bbsparse.golden import csb, prune
from bbsparse.golden.config import Config
from bbsparse.golden.model import IntegerLayer, IntegerModel
from bbsparse.hdl.model import ModelCore
from bbsparse.tb.sim_stream import AXIBeat, pauses, stream_get, stream_put


def random_model(seed, *, sizes, lanes, pes, bank_size, nnz, relus=None):
    rng = np.random.default_rng(seed)
    cols_max = max(-(-n // bank_size) * bank_size for n in sizes[:-1])
    config = Config(lanes=lanes, pes=pes, bank_size=bank_size, nnz_per_bank=nnz,
                    cols=cols_max)
    config = Config(**{**config.to_dict(), "out_width": config.acc_width})
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        padded = -(-n_in // bank_size) * bank_size
        W = rng.integers(-128, 128, (n_out, padded))
        W = prune.prune_bbs(W, bank_size, nnz)[:, :n_in]
        bias = rng.integers(-3000, 3000, n_out)
        last = k == len(sizes) - 2
        layers.append(IntegerLayer(W, bias, out_shift=0 if last else 7,
                                   relu=(not last) if relus is None else relus[k],
                                   name=f"fc{k}"))
    return IntegerModel(config, tuple(layers), out_width=config.acc_width + 1,
                        bias_width=config.acc_width)


def run_model(model, X, *, seed, idle=0.0, stall=0.0):
    dut = ModelCore(model)
    c0 = model.layer_config(0)
    X0 = np.pad(X, ((0, 0), (0, c0.cols - X.shape[1])))
    x_words = csb.x_beat_ints(c0, csb.pack_x(c0, X0))
    beats = [AXIBeat(w, int((i + 1) % c0.x_beats == 0)) for i, w in enumerate(x_words)]
    last = model.layer_config(len(model.layers) - 1)
    groups = last.row_groups(model.outputs)
    got = []

    async def source(ctx):
        idles = pauses(idle, seed)
        for beat in beats:
            await stream_put(ctx, dut.s_axis_x, beat, idle=idles)

    async def sink(ctx):
        stalls = pauses(stall, seed + 1)
        for _ in range(len(X) * groups):
            got.append(await stream_get(ctx, dut.m_axis_y, stall=stalls))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(2e-6 * 20000)
    assert len(got) == len(X) * groups, f"only {len(got)} y beats"
    w = model.out_width
    Y = np.zeros((len(X), groups * model.config.pes), dtype=np.int64)
    for i, beat in enumerate(got):
        for p in range(model.config.pes):
            v = (beat.data >> (p * w)) & ((1 << w) - 1)
            Y[i // groups, (i % groups) * model.config.pes + p] = v - (1 << w) * (v >> (w - 1))
        assert beat.last == int((i + 1) % groups == 0)
    return Y[:, :model.outputs]


@pytest.mark.parametrize("case", [
    dict(sizes=(20, 13, 9, 5), lanes=2, pes=2, bank_size=4, nnz=2),
    dict(sizes=(16, 24, 8), lanes=4, pes=1, bank_size=4, nnz=1),
    dict(sizes=(12, 7), lanes=2, pes=3, bank_size=2, nnz=1),
], ids=["3layers-pes2", "wide-hidden-nnz1", "one-layer-pes3"])
@pytest.mark.parametrize("stress", [(0.0, 0.0), (0.3, 0.3)], ids=["free", "stalls"])
def test_model_core_matches_golden(case, stress):
    seed = sum(case["sizes"]) + case["lanes"]
    model = random_model(seed, **case)
    X = np.random.default_rng(seed).integers(-128, 128, (3, case["sizes"][0]))
    expected = model.forward(X)
    got = run_model(model, X, seed=seed, idle=stress[0], stall=stress[1])
    np.testing.assert_array_equal(got, expected)
