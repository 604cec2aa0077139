"""No bubbles anywhere (DESIGN §14.4): with no stall on any stream, a run takes exactly the
ideal cycles of §7.1 plus the pipeline latency, for every batch and every ratio of one
matrix's w beats to the x beats, on both engines, under Verilator.

The sweep crosses the cases that used to lose cycles: w beats equal to the x beats (the
next-but-one x must start loading in the very cycle the last read of its buffer reaches the
memories), one either side, and well below and above; batches 1 to 5 (the lost cycles showed
from the third vector on, every other vector). For the unstructured engine the matrices are
built to a chosen crossbar length (golden ``beat_cycles``), in both stream orders; in the
`columns` order every matrix ends on a beat with bank conflicts, whose last reads come
cycles after its acceptance. Each configuration is one test: its simulator is built once and
serves the whole sweep, and a failure lists every point that missed.
"""

import numpy as np
import pytest

from bbsparse.golden import csb, cycles, prune, spmv, unstructured
from bbsparse.golden.config import Config
from bbsparse.tb.harness import run_spmv

BATCHES = range(1, 6)


def ratios_around(x_beats: int, step: int = 1) -> list[int]:
    """w beats (or crossbar cycles) per matrix, multiples of `step`: about 0.25x to 4x the
    x beats, with exactly equal and the nearest either side."""
    wanted = {x_beats // 4, x_beats // 2, x_beats - step, x_beats, x_beats + step,
              3 * x_beats // 2, 2 * x_beats, 3 * x_beats, 4 * x_beats, step}
    sweep = sorted({max(step, -(-w // step) * step) for w in wanted})
    assert {x_beats, x_beats + step, 4 * x_beats} <= set(sweep)
    assert x_beats <= step or {x_beats - step, step} <= set(sweep)
    return sweep


def check_run(config, W, X, *, order: str = "banks", tmp_path) -> tuple[list[str], dict]:
    """Run W @ X on the RTL; the ways it missed (exact y, total and steady cycles)."""
    result = run_spmv(config, W, X, workdir=tmp_path, order=order)
    report = result.report
    misses = []
    if not np.array_equal(result.y, spmv.spmv(config, W, X)):
        misses.append("y differs from golden")
    if report["error"] or not report["y_tlast_ok"]:
        misses.append("error or y tlast")
    return misses, report


BBS_CONFIGS = {
    # One round a row: a group is one w beat, so w beats step by one around x_beats = 4;
    # the last read of a matrix can be the address the next-but-one x writes first.
    "rounds1-pes2": dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=16),
    # The same with three broadcast registers: x writes and reads both reach the memories
    # three cycles later, through a tree (one register for all PEs, one for each group of
    # PEs: PEs 0 and 1, PE 2; then each PE's own copies); two result registers (the
    # credits cover them).
    "rounds1-broadcast3": dict(lanes=2, pes=3, bank_size=4, nnz_per_bank=1, cols=8,
                               broadcast_registers=3, result_registers=2),
    # Two rounds: groups of two beats around x_beats = 8.
    "rounds2": dict(lanes=4, pes=1, bank_size=4, nnz_per_bank=1, cols=32),
    # One-beat x frames: a buffer is refilled whole in one cycle.
    "x-beats1": dict(lanes=2, pes=1, bank_size=1, nnz_per_bank=1, cols=2),
}


@pytest.mark.parametrize("name", list(BBS_CONFIGS))
def test_bbs_no_bubble(name, tmp_path):
    config = Config(**BBS_CONFIGS[name])
    step, x_beats = config.cycles_per_row, config.x_beats
    rng = np.random.default_rng(13)
    failures, points = [], 0
    for w_beats in ratios_around(x_beats, step):
        groups = w_beats // step
        rows = groups * config.pes - (1 if config.pes > 1 else 0)  # a padding row too
        dense = rng.integers(-128, 128, size=(rows, config.cols))
        W = prune.prune_bbs(dense, config.bank_size, config.nnz_per_bank)
        for batch in BATCHES:
            X = rng.integers(-128, 128, size=(batch, config.cols))
            misses, report = check_run(config, W, X, tmp_path=tmp_path)
            ideal = cycles.ideal_cycles(config, rows, batch)
            assert ideal == cycles.overlapped_cycles(x_beats, w_beats, batch)
            if report["cycles"] != ideal + report["pipeline_latency"]:
                misses.append(f"{report['cycles']} cycles, ideal {ideal} + latency "
                              f"{report['pipeline_latency']}")
            # Matrices start every max(w, x) cycles: no bubble inside the run either.
            steady = w_beats + (batch - 1) * max(w_beats, x_beats)
            if report["steady_cycles"] != steady:
                misses.append(f"steady {report['steady_cycles']}, not {steady}")
            if misses:
                failures.append(f"w {w_beats} / x {x_beats}, batch {batch}: "
                                + "; ".join(misses))
            points += 1
    assert not failures, f"{len(failures)} of {points} runs missed:\n" + "\n".join(failures)


UNSTRUCTURED_CONFIGS = {
    "lanes4": dict(lanes=4, pes=1, cols=32),       # x_beats 8
    "lanes4-pes3": dict(lanes=4, pes=3, cols=20),  # x_beats 5
    "x-beats1": dict(lanes=2, pes=2, cols=2),      # one-beat x frames
}


def crossbar_matrix(config, target: int, order: str, rng) -> np.ndarray:
    """A matrix whose stream takes exactly `target` crossbar cycles in `order`.

    `banks`: one nonzero a row, one conflict-free beat a row group. `columns`: row groups of
    one beat whose `k` nonzeros sit in one bank (k cycles), k drawn at random, the last group
    taking what is left: the matrix ends on a beat with conflicts whenever that is 2 or more.
    Every PE of a group gets the same columns (other values), so the PEs agree on the beat's
    length."""
    lanes, pes, cols = config.lanes, config.pes, config.cols
    patterns = []
    if order == "banks":
        patterns = [[int(rng.integers(cols))] for _ in range(target)]
    else:
        left = target
        while left:
            k = min(left, int(rng.integers(1, lanes + 1)))
            if left - k == 1 and lanes > 1 and k > 1:
                k -= 1  # keep the last group conflicted when it can be
            bank = int(rng.integers(lanes))
            in_bank = np.arange(bank, cols, lanes)
            patterns.append(sorted(rng.choice(in_bank, size=min(k, len(in_bank)),
                                              replace=False).tolist()))
            left -= len(patterns[-1])
    W = np.zeros((len(patterns) * pes, cols), dtype=np.int64)
    for group, columns in enumerate(patterns):
        for p in range(pes):
            W[group * pes + p, columns] = rng.choice([-7, -3, 2, 5, 9], size=len(columns))
    return W


@pytest.mark.parametrize("order", ["banks", "columns"])
@pytest.mark.parametrize("name", list(UNSTRUCTURED_CONFIGS))
def test_unstructured_no_bubble(name, order, tmp_path):
    config = Config(pattern="unstructured", bank_size=1, **UNSTRUCTURED_CONFIGS[name])
    x_beats = config.x_beats
    rng = np.random.default_rng(17)
    failures, points, conflicted_ends = [], 0, 0
    for target in ratios_around(x_beats):
        W = crossbar_matrix(config, target, order, rng)
        values, columns, _ = unstructured.pack_w(config, W, order)
        lengths = unstructured.beat_cycles(config, values, columns)
        assert lengths.sum() == target, (target, lengths)  # the construction is right
        conflicted_ends += int(lengths[-1] > 1)
        stalls = int(lengths.sum()) - len(lengths)
        for batch in BATCHES:
            X = rng.integers(-128, 128, size=(batch, config.cols))
            misses, report = check_run(config, W, X, order=order, tmp_path=tmp_path)
            predicted = cycles.overlapped_cycles(x_beats, target, batch)
            assert report["predicted_cycles"] == predicted
            if report["cycles"] != predicted + report["pipeline_latency"]:
                misses.append(f"{report['cycles']} cycles, predicted {predicted} + latency "
                              f"{report['pipeline_latency']}")
            # Accepted beats: matrices start every max(F', x) cycles; the last beat's own
            # conflict cycles come after its acceptance.
            steady = target - (int(lengths[-1]) - 1) + (batch - 1) * max(target, x_beats)
            if report["steady_cycles"] != steady:
                misses.append(f"steady {report['steady_cycles']}, not {steady}")
            if report["crossbar_stall_cycles"] != batch * stalls:
                misses.append(f"{report['crossbar_stall_cycles']} crossbar stalls, not "
                              f"{batch * stalls}")
            if misses:
                failures.append(f"F' {target} / x {x_beats}, batch {batch}: "
                                + "; ".join(misses))
            points += 1
    if order == "columns" and config.cols >= 2 * config.lanes:
        assert conflicted_ends >= 3  # the matrices really end on conflicted beats
    assert not failures, f"{len(failures)} of {points} runs missed:\n" + "\n".join(failures)


# --- The early release is safe ---------------------------------------------------------------


def _same_cycle_read_write(engine: str, W, X, config, *, idle: float, seed: int):
    """Simulate the core in Amaranth and list the cycles in which an x buffer is written
    while a read of a w beat reaches the same buffer (the hazard the write stage exists to
    avoid: a block RAM's read of an address written in the same cycle is undefined). Also
    returns the y beats."""
    from amaranth.hdl import Fragment
    from amaranth.sim import Simulator

    from bbsparse.hdl.engines import engine_of
    from bbsparse.tb.formal import internal
    from bbsparse.tb.sim_stream import pauses, stream_get, stream_put

    dut = engine_of(config).core(config)
    fragment = Fragment.get(dut, None)
    write_en = internal(fragment, "x_write_en")
    write_addr = internal(fragment, "x_write_addr")
    x_beats = config.x_beats
    packed = config.format.pack(config, W, X, order="columns")
    groups = config.row_groups(W.shape[0])
    if engine == "bbs":
        base = internal(fragment, "base")
        reads = (dut.s_axis_w.tvalid, dut.s_axis_w.tready, base)
    else:
        gather = fragment.find_subfragment("gather")
        grant = internal(gather, "grant")
        a_row = internal(gather, "a_row", gather.origins[0].req.payload.shape())
        reads = (grant, a_row)
    hazards, y_words = [], []

    async def x_source(ctx):
        idle_x = pauses(idle, f"x{seed}")
        for index, word in enumerate(packed.x_words):
            await stream_put(ctx, dut.s_axis_x, (word, int(index % x_beats == x_beats - 1)),
                             idle=idle_x)

    async def w_source(ctx):
        idle_w = pauses(idle, f"w{seed}")
        for _ in range(len(X)):
            for index, word in enumerate(packed.w_words):
                await stream_put(ctx, dut.s_axis_w, (word, int(index == len(packed.w_words) - 1)),
                                 idle=idle_w)

    async def y_sink(ctx):
        for _ in range(len(X) * groups):
            y_words.append((await stream_get(ctx, dut.m_axis_y)).data)

    async def monitor(ctx):
        cycle, read_half_next = 0, None
        while True:
            _, _, en, addr, *sampled = await ctx.tick().sample(write_en, write_addr, *reads)
            if engine == "bbs":
                # A w beat's read address is registered: it reaches the memories a cycle later.
                valid, ready, base_now = sampled
                read_halves = {read_half_next} - {None}
                read_half_next = int(base_now >= x_beats) if valid and ready else None
            else:
                granted, row = sampled
                read_halves = {int(row.index[i] >= x_beats * config.lanes)
                               for i in range(len(row.index)) if granted >> i & 1}
            if en and int(addr >= x_beats) in read_halves:
                hazards.append(cycle)
            cycle += 1

    sim = Simulator(fragment)
    sim.add_clock(1e-6)
    sim.add_testbench(x_source)
    sim.add_testbench(w_source)
    sim.add_testbench(y_sink)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return hazards, y_words


@pytest.mark.parametrize("idle", [0.0, 0.3], ids=["no-stalls", "idle-sources"])
@pytest.mark.parametrize("engine", ["bbs", "unstructured"])
def test_released_buffer_is_never_written_while_read(engine, idle):
    """The tightest case, a matrix exactly as long as an x frame, five vectors: the next-but-
    one x starts loading in the cycle its buffer's last read reaches the memories, so its
    first write must land a cycle later, never beside a read of that buffer (the simulation
    of the Verilog could not tell: its memories return the old word). The unstructured
    matrix ends on a beat with bank conflicts, whose last read comes cycles after it was
    accepted."""
    rng = np.random.default_rng(23)
    if engine == "bbs":
        config = Config(lanes=4, pes=1, bank_size=4, nnz_per_bank=1, cols=16)  # x_beats 4
        W = prune.prune_bbs(rng.integers(-128, 128, size=(config.x_beats, 16)), 4, 1)
    else:
        config = Config(pattern="unstructured", lanes=4, pes=1, bank_size=1, cols=16)
        W = np.zeros((2, 16), dtype=np.int64)
        W[0, 1] = 3           # one cycle
        W[1, [0, 4, 8]] = 5   # one beat, three cycles: four in all, as x_beats
    X = rng.integers(-128, 128, size=(5, 16))
    hazards, y_words = _same_cycle_read_write(engine, W, X, config, idle=idle, seed=3)
    assert not hazards, f"a buffer is written in cycles {hazards} while it is read"
    Y = csb.unpack_y(config, y_words, W.shape[0], batch=len(X))
    assert np.array_equal(Y, spmv.spmv(config, W, X))
