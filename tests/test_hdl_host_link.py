"""The host link's stages in the Amaranth simulator, each against a small Python model under
random idle cycles and back-pressure, then the whole :class:`HostLink` with a BBS core,
driven by the real host driver (:class:`bbsparse.host.AsyncHost`) over its byte streams;
and the same stages without the weight path (a model board), down to a
:class:`ModelHostLink` with a model core under :class:`bbsparse.host.AsyncModelHost`.

Every random choice comes from a seed printed in the failure messages.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from bbsparse.golden.config import Config
from bbsparse.golden.prune import prune_bbs
from bbsparse.golden.spmv import spmv
from bbsparse.hdl.beat_adapter import BeatAdapter
from bbsparse.hdl.frame_parser import FrameParser
from bbsparse.hdl.host_link import HostLink, ModelHostLink
from bbsparse.hdl.model import ModelCore
from bbsparse.hdl.reply import ReplySerialiser
from bbsparse.hdl.run_sequencer import RunSequencer
from bbsparse.hdl.spmv import BBSSpMV
from bbsparse.host import (
    AsyncHost,
    AsyncModelHost,
    BoardError,
    Command,
    Flags,
    LinkError,
    Status,
    frame,
)
from bbsparse.tb.sim_stream import AXIBeat, pauses, stream_get, stream_put
from tests.test_hdl_model import random_model

PERIOD = 1e-8


def simulate(dut, benches, background=(), *, max_cycles: int, tag: str) -> None:
    """Run `benches` (critical) and `background` testbenches on `dut`; fail if the critical
    ones have not finished after `max_cycles` (a hang, a lost beat)."""
    async def watchdog(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
        raise AssertionError(f"{tag} not finished after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    for bench in benches:
        sim.add_testbench(bench)
    for bench in (*background, watchdog):
        sim.add_testbench(bench, background=True)
    sim.run()


def edges(signals, record):
    """A background testbench appending, at every clock edge, the values `signals` had
    in the cycle that edge ends (so a transfer is ``valid & ready`` of one entry)."""
    async def monitor(ctx):
        while True:
            _, _, *values = await ctx.tick().sample(*signals)
            record.append(tuple(int(value) for value in values))
    return monitor


# -- frame parser ----------------------------------------------------------------------------

PARSER = dict(w_bytes=3, x_bytes=2, max_w_beats=6, x_beats=4, timeout_cycles=40)


def parser_verdict(command: int, length: int, weights: bool = True) -> Status:
    if command == Command.LOAD_W and not weights:
        return Status.BAD_COMMAND
    if command == Command.LOAD_W:
        return Status.OK if 1 <= length <= PARSER["max_w_beats"] else Status.BAD_LENGTH
    if command == Command.LOAD_X:
        return Status.OK if length == PARSER["x_beats"] else Status.BAD_LENGTH
    if command in set(Command):
        return Status.OK if length == 0 else Status.BAD_LENGTH
    return Status.BAD_COMMAND


def unit_bytes(command: int, weights: bool = True) -> int:
    units = {Command.LOAD_X: PARSER["x_bytes"]}
    if weights:
        units[Command.LOAD_W] = PARSER["w_bytes"]
    return units.get(command, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(PARSER, w_bytes=0), "w_bytes must be a positive integer, not 0"),
    (dict(PARSER, x_beats=65536), "x_beats must fit the 16-bit length field, not 65536"),
    (dict(PARSER, timeout_cycles=1.5), "timeout_cycles must be a positive integer, not 1.5"),
    (dict(PARSER, w_bytes=None), "w_bytes and max_w_beats must both be given .* or both be "
                                 "None .*, not None and 6"),
])
def test_frame_parser_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FrameParser(**kwargs)


@pytest.mark.parametrize("weights", [True, False], ids=["weights", "rom"])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.5)], ids=["free", "stalled"])
def test_frame_parser_judges_and_forwards(stalls, weights):
    """Every header judged and every payload forwarded or skipped; without weights (a
    model board) LOAD_W is an unknown command whose length counts bytes."""
    seed = 11 + int(10 * stalls[1]) + 100 * (not weights)
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    headers = [(Command.LOAD_W, 1), (Command.LOAD_W, 6), (Command.LOAD_W, 0),
               (Command.LOAD_W, 7), (Command.LOAD_X, 4), (Command.LOAD_X, 3),
               (Command.RUN, 0), (Command.RUN, 2), (Command.INFO, 0), (Command.INFO, 1),
               (Command.READ_Y, 0), (Command.READ_CYCLES, 0), (Command.STATUS, 0),
               (0x7E, 5), (0x00, 0), (0xFF, 1)]
    headers += [(int(rng.choice([Command.LOAD_W, Command.LOAD_X, Command.RUN, 0x41])),
                 int(rng.integers(0, 8))) for _ in range(12)]
    frames = [(command, length,
               bytes(rng.integers(0, 256, length * unit_bytes(command, weights))
                     .astype(np.uint8)))
              for command, length in headers]
    dut = FrameParser(**(PARSER if weights else dict(PARSER, w_bytes=None, max_w_beats=None)))
    ends, forwarded, cycles = [], bytearray(), []

    async def host(ctx):
        idle = pauses(stalls[0], f"{seed}/rx")
        for command, length, payload in frames:
            for byte in frame(command, length, payload):
                await stream_put(ctx, dut.rx, byte, idle=idle)

    async def frame_sink(ctx):
        stall = pauses(stalls[1], f"{seed}/frame")
        while len(ends) < len(frames):
            end = await stream_get(ctx, dut.frame, stall=stall)
            ends.append((int(end.command), int(end.length), int(end.status)))

    async def payload_sink(ctx):
        stall = pauses(stalls[1], f"{seed}/payload")
        while True:
            forwarded.append(await stream_get(ctx, dut.payload, stall=stall))

    simulate(dut, [host, frame_sink],
             [payload_sink, edges([dut.begin, dut.command, dut.frame.valid, dut.rx.ready],
                                  cycles)],
             max_cycles=20_000, tag=tag)
    assert ends == [(c, n, parser_verdict(c, n, weights)) for c, n, _ in frames], tag
    assert bytes(forwarded) == b"".join(p for c, n, p in frames
                                        if parser_verdict(c, n, weights) == Status.OK), tag
    assert [command for b, command, _, _ in cycles if b] == [c for c, _, _ in frames], tag
    assert not any(valid and ready for _, _, valid, ready in cycles), \
        f"{tag} a byte was taken while a frame end was waiting"


def test_frame_parser_times_out_inside_a_frame_only():
    """TIMEOUT ``timeout_cycles + 1`` cycles after the last byte of a cut frame, in each
    field; never while waiting for a command byte; and a byte that arrives in the very cycle
    the count runs out saves the frame only if it completes a unit."""
    timeout = PARSER["timeout_cycles"]
    dut = FrameParser(**PARSER)
    ends, forwarded = [], bytearray()

    async def put(ctx, data):
        for byte in data:
            await stream_put(ctx, dut.rx, byte)

    async def wait_end(ctx):
        """Cycles from now until the frame end is offered; then take it."""
        waited = 0
        while not ctx.get(dut.frame.valid):
            await ctx.tick()
            waited += 1
        end = await stream_get(ctx, dut.frame)
        ends.append(int(end.status))
        return waited

    async def host(ctx):
        await ctx.tick().repeat(3 * timeout)  # no command yet: nothing happens
        assert not ctx.get(dut.frame.valid)
        await put(ctx, frame(Command.RUN, 0))
        assert await wait_end(ctx) == 0
        for cut in (b"W", b"W\x02", frame(Command.LOAD_W, 2, bytes(range(4)))):
            await put(ctx, cut)
            assert await wait_end(ctx) == timeout + 1, f"cut after {len(cut)} bytes"
        # LOAD_W of 2 beats of 3 bytes; the 2nd byte of beat 0 comes as the count runs out.
        await put(ctx, frame(Command.LOAD_W, 2, b"\x10"))
        await ctx.tick().repeat(timeout)
        await put(ctx, b"\x11")
        assert await wait_end(ctx) == 0
        # The same, but the late byte completes beat 0: the frame goes on.
        await put(ctx, frame(Command.LOAD_W, 2, b"\x20\x21"))
        await ctx.tick().repeat(timeout)
        await put(ctx, b"\x22\x23\x24\x25")
        assert await wait_end(ctx) == 0

    async def payload_sink(ctx):
        while True:
            forwarded.append(await stream_get(ctx, dut.payload))

    simulate(dut, [host], [payload_sink], max_cycles=2000, tag="timeouts")
    assert ends == [Status.OK] + [Status.TIMEOUT] * 4 + [Status.OK]
    assert bytes(forwarded) == bytes(range(4)) + b"\x10\x11" + bytes(range(0x20, 0x26))


# -- beat adapter ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(w_width=0, x_width=8, cycles_per_row=1), "w_width must be a positive integer"),
    (dict(w_width=8, x_width=8, cycles_per_row=0), "cycles_per_row must be a positive"),
])
def test_beat_adapter_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BeatAdapter(**kwargs)


@pytest.mark.parametrize("widths", [(11, 20), (24, 8), (5, 5)], ids=str)
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.5)], ids=["free", "stalled"])
def test_beat_adapter_assembles_little_endian(widths, stalls):
    w_width, x_width = widths
    cycles_per_row = 3
    seed = w_width * 100 + x_width + int(10 * stalls[1])
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    dut = BeatAdapter(w_width=w_width, x_width=x_width, cycles_per_row=cycles_per_row)
    # (w frame?, beats, a stray partial beat at the end): the bytes are random, padding
    # bits above the width included, so each beat is checked against the bytes it came from.
    frames = [(True, 6, False), (False, 4, False), (True, 7, True), (True, 3, False),
              (False, 1, True), (True, 1, False)]
    frames += [(bool(rng.integers(2)), int(rng.integers(1, 9)), bool(rng.integers(2)))
               for _ in range(8)]
    received = {True: [], False: []}
    expected = {True: [], False: []}

    async def source(ctx):
        idle = pauses(stalls[0], f"{seed}/bytes")
        for number, (is_w, beats, partial) in enumerate(frames):
            ctx.set(dut.start, 1)
            ctx.set(dut.w_frame, is_w)
            await ctx.tick()
            ctx.set(dut.start, 0)
            width = w_width if is_w else x_width
            size = -(-width // 8)
            partial = partial and size > 1  # a lone byte of a 1-byte beat is a whole beat
            data = bytes(rng.integers(0, 256, beats * size + partial).astype(np.uint8))
            for index in range(beats):
                value = int.from_bytes(data[index * size:(index + 1) * size], "little")
                expected[is_w].append((value & ((1 << width) - 1), index))
            for byte in data:
                await stream_put(ctx, dut.payload, byte, idle=idle)
            assert ctx.get(dut.groups) == beats // cycles_per_row, f"{tag} frame {number}"
            assert ctx.get(dut.whole_groups) == (beats % cycles_per_row == 0), \
                f"{tag} frame {number}: whole_groups"
        while len(received[True]) + len(received[False]) < sum(f[1] for f in frames):
            await ctx.tick()

    def sink(stream, is_w):
        async def bench(ctx):
            stall = pauses(stalls[1], f"{seed}/{is_w}")
            while True:
                beat = await stream_get(ctx, stream, stall=stall)
                received[is_w].append((int(beat.data), int(beat.index)))
        return bench

    simulate(dut, [source], [sink(dut.w, True), sink(dut.x, False)], max_cycles=20_000,
             tag=tag)
    assert received[True] == expected[True], f"{tag} w beats"
    assert received[False] == expected[False], f"{tag} x beats"


@pytest.mark.parametrize("x_width", [8, 13, 44])
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.5)], ids=["free", "stalled"])
def test_beat_adapter_without_weights(x_width, stalls):
    """A model board's adapter: x beats only, no weight ports."""
    seed = 300 + x_width + int(10 * stalls[1])
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    dut = BeatAdapter(w_width=None, x_width=x_width)
    assert not {"w", "w_frame", "groups", "whole_groups"} & set(dut.signature.members)
    size = -(-x_width // 8)
    frames = [int(rng.integers(1, 7)) for _ in range(6)]
    received, expected = [], []

    async def source(ctx):
        idle = pauses(stalls[0], f"{seed}/bytes")
        for beats in frames:
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            # A stray partial beat after the frame's beats must not leak into the next one.
            stray = int(size > 1)
            data = bytes(rng.integers(0, 256, beats * size + stray).astype(np.uint8))
            for index in range(beats):
                value = int.from_bytes(data[index * size:(index + 1) * size], "little")
                expected.append((value & ((1 << x_width) - 1), index))
            for byte in data:
                await stream_put(ctx, dut.payload, byte, idle=idle)
        while len(received) < sum(frames):
            await ctx.tick()

    async def sink(ctx):
        stall = pauses(stalls[1], f"{seed}/x")
        while True:
            beat = await stream_get(ctx, dut.x, stall=stall)
            received.append((int(beat.data), int(beat.index)))

    simulate(dut, [source], [sink], max_cycles=20_000, tag=tag)
    assert received == expected, tag


# -- run sequencer ---------------------------------------------------------------------------

SEQ = dict(w_width=12, x_width=10, y_width=9, max_w_beats=8, x_beats=3, max_y_beats=4,
           timeout_cycles=32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(SEQ, y_width=0), "y_width must be a positive integer, not 0"),
    (dict(SEQ, max_w_beats=70000), "max_w_beats must fit the 16-bit length field"),
])
def test_run_sequencer_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RunSequencer(**kwargs)


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "stalled"])
def test_run_sequencer_loads_runs_and_judges(stalls):
    seed = 5 + int(10 * stalls[1])
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    dut = RunSequencer(**SEQ)
    w_words = [int(v) for v in rng.integers(0, 1 << SEQ["w_width"], 6)]
    x_words = [int(v) for v in rng.integers(0, 1 << SEQ["x_width"], SEQ["x_beats"])]
    replies = []
    taken = {"x": [], "w": []}
    core = {"alive": True, "y": deque(), "after_w": 0, "error_at": None}
    cycles = []  # per edge: x fire, y fire, core_reset, busy

    async def request(ctx, command, length=0, status=Status.OK, *, begin=False, beats=(),
                      groups=0, whole=True):
        """One frame: its begin, its beats, its end; returns the reply's status."""
        if begin:
            ctx.set(dut.begin, 1)
            ctx.set(dut.command, command)
            await ctx.tick()
            ctx.set(dut.begin, 0)
        idle = pauses(stalls[0], f"{seed}/beats")
        for index, word in enumerate(beats):
            stream = dut.w_beat if command == Command.LOAD_W else dut.x_beat
            await stream_put(ctx, stream, {"data": word, "index": index}, idle=idle)
        ctx.set(dut.groups, groups)
        ctx.set(dut.whole_groups, whole)
        count = len(replies)
        await stream_put(ctx, dut.frame, {"command": command, "length": length,
                                          "status": status})
        await ctx.tick()
        assert len(replies) == count + 1, f"{tag} {command!r}: the frame was taken before " \
                                          f"its reply"
        assert replies[-1][1] == command
        return replies[-1][0]

    async def run(ctx, y_words, last_at=None, error_at=None, alive=True):
        taken["x"].clear()
        taken["w"].clear()
        last_at = len(y_words) - 1 if last_at is None else last_at
        core.update(alive=alive, after_w=len(w_words), error_at=error_at)
        core["y"].extend(AXIBeat(word, int(i == last_at)) for i, word in enumerate(y_words))
        status = await request(ctx, Command.RUN)
        core["y"].clear()
        return status

    async def read_y(ctx, address):
        ctx.set(dut.y_read.addr, address)
        ctx.set(dut.y_read.en, 1)
        await ctx.tick()
        return ctx.get(dut.y_read.data)

    async def host(ctx):
        flags = dut.flags
        assert await request(ctx, Command.RUN) == Status.BAD_STATE
        assert await request(ctx, Command.READ_Y) == Status.BAD_STATE
        assert await request(ctx, Command.LOAD_W, 9, Status.BAD_LENGTH) == Status.BAD_LENGTH
        assert await request(ctx, 0x7E, 1, Status.BAD_COMMAND) == Status.BAD_COMMAND
        # A partial row group: refused, and the matrix forgotten from its command byte on.
        assert await request(ctx, Command.LOAD_W, 6, begin=True, beats=w_words, groups=2,
                             whole=True) == Status.OK
        assert ctx.get(flags.w_loaded) and ctx.get(dut.w_beats) == 6
        assert await request(ctx, Command.LOAD_W, 5, begin=True, beats=w_words[:5],
                             groups=1, whole=False) == Status.BAD_LENGTH
        assert not ctx.get(flags.w_loaded)
        assert await request(ctx, Command.LOAD_W, 6, begin=True, beats=w_words, groups=2,
                             whole=True) == Status.OK
        assert await request(ctx, Command.LOAD_X, 3, begin=True, beats=x_words) == Status.OK
        assert ctx.get(flags.x_loaded)
        for command in (Command.READ_CYCLES, Command.STATUS, Command.INFO):
            assert await request(ctx, command) == Status.OK

        # A good run: two row groups, two y beats.
        y_words = [0x1A5, 0x0F3]
        assert await run(ctx, y_words) == Status.OK, tag
        assert taken["x"] == [AXIBeat(w, int(i == 2)) for i, w in enumerate(x_words)], tag
        assert taken["w"] == [AXIBeat(w, int(i == 5)) for i, w in enumerate(w_words)], tag
        assert ctx.get(flags.y_valid) and ctx.get(dut.y_count) == 2
        assert [await read_y(ctx, a) for a in range(2)] == y_words, tag
        x_fires = [i for i, edge in enumerate(cycles) if edge[0]]
        y_fires = [i for i, edge in enumerate(cycles) if edge[1]]
        assert ctx.get(dut.cycles) == y_fires[-1] - x_fires[0] + 1, tag
        assert [edge[2] for edge in cycles].count(1) == 1, f"{tag} one cycle of core reset"
        assert await request(ctx, Command.READ_Y) == Status.OK

        # Runs that fail: the core's error, tlast early, tlast missing, no progress.
        assert await run(ctx, y_words, error_at=4) == Status.CORE_ERROR, tag
        assert ctx.get(flags.core_error) and not ctx.get(flags.y_valid)
        assert await request(ctx, Command.READ_Y) == Status.BAD_STATE
        # (Only beats the link takes are planned: a run that ends leaves none waiting.)
        assert await run(ctx, y_words[:1], last_at=0) == Status.CORE_ERROR, tag
        assert not ctx.get(flags.core_error)
        assert await run(ctx, y_words, last_at=5) == Status.CORE_ERROR, tag
        start = len(cycles)
        assert await run(ctx, y_words, alive=False) == Status.TIMEOUT, tag
        busy = sum(edge[3] for edge in cycles[start:])
        assert busy == SEQ["timeout_cycles"] + 1, f"{tag} timed out after {busy} cycles"
        assert await run(ctx, y_words) == Status.OK, f"{tag} a run after the failures"

    async def reply_sink(ctx):
        stall = pauses(stalls[1], f"{seed}/reply")
        while True:
            reply = await stream_get(ctx, dut.reply, stall=stall)
            replies.append((int(reply.status), int(reply.command)))

    def core_sink(name):
        async def bench(ctx):
            # A dead core never takes a beat: ready stays low.
            stall = (not core["alive"] or pause
                     for pause in pauses(stalls[1], f"{seed}/{name}"))
            while True:
                beat = await stream_get(ctx, getattr(dut, name), stall=stall)
                taken[name].append(AXIBeat(int(beat.data), int(beat.last)))
                if name == "w" and len(taken["w"]) == core["error_at"]:
                    ctx.set(dut.core_error, 1)
                    await ctx.tick()
                    ctx.set(dut.core_error, 0)
        return bench

    async def core_y(ctx):
        idle = pauses(stalls[0], f"{seed}/y")
        while True:
            if core["y"] and len(taken["w"]) >= core["after_w"]:
                await stream_put(ctx, dut.y, core["y"].popleft(), idle=idle)
            else:
                await ctx.tick()

    simulate(dut, [host], [reply_sink, core_sink("x"), core_sink("w"), core_y,
                           edges([dut.x.tvalid & dut.x.tready, dut.y.tvalid & dut.y.tready,
                                  dut.core_reset, dut.busy], cycles)],
             max_cycles=20_000, tag=tag)


SEQ_ROM = dict(SEQ, w_width=None, max_w_beats=None, max_y_beats=2)


def test_run_sequencer_rejects_half_a_weight_path():
    with pytest.raises(ValueError, match="w_width and max_w_beats must both be given"):
        RunSequencer(**dict(SEQ, max_w_beats=None))


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["free", "stalled"])
def test_run_sequencer_without_weights(stalls):
    """A model board's sequencer: the weights always "loaded", RUN needs only x and
    expects exactly `max_y_beats` y beats, the last with tlast; LOAD_W is unknown."""
    seed = 77 + int(10 * stalls[1])
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    dut = RunSequencer(**SEQ_ROM)
    assert not {"w", "w_beat", "groups", "whole_groups"} & set(dut.signature.members)
    x_words = [int(v) for v in rng.integers(0, 1 << SEQ["x_width"], SEQ["x_beats"])]
    replies, taken = [], []
    core = {"alive": True, "y": deque()}
    cycles = []  # per edge: x fire, y fire

    async def request(ctx, command, *, begin=False, beats=()):
        if begin:
            ctx.set(dut.begin, 1)
            ctx.set(dut.command, command)
            await ctx.tick()
            ctx.set(dut.begin, 0)
        for index, word in enumerate(beats):
            await stream_put(ctx, dut.x_beat, {"data": word, "index": index})
        count = len(replies)
        await stream_put(ctx, dut.frame, {"command": command, "length": len(beats),
                                          "status": Status.OK})
        await ctx.tick()
        assert len(replies) == count + 1 and replies[-1][1] == command, tag
        return replies[-1][0]

    async def run(ctx, y_words, last_at=None, alive=True):
        taken.clear()
        last_at = len(y_words) - 1 if last_at is None else last_at
        core["alive"] = alive
        core["y"].extend(AXIBeat(word, int(i == last_at)) for i, word in enumerate(y_words))
        status = await request(ctx, Command.RUN)
        core["y"].clear()
        return status

    async def host(ctx):
        flags = dut.flags
        assert ctx.get(flags.w_loaded) and ctx.get(dut.w_beats) == 0, tag
        assert await request(ctx, Command.RUN) == Status.BAD_STATE
        assert await request(ctx, Command.READ_Y) == Status.BAD_STATE
        assert await request(ctx, Command.LOAD_W, begin=True) == Status.BAD_COMMAND
        assert ctx.get(flags.w_loaded), f"{tag} LOAD_W must not touch the ROM's flag"
        assert await request(ctx, Command.LOAD_X, begin=True, beats=x_words) == Status.OK
        assert ctx.get(flags.x_loaded)
        y_words = [0x1A5, 0x0F3]
        start = len(cycles)
        assert await run(ctx, y_words) == Status.OK, tag
        assert taken == [AXIBeat(w, int(i == 2)) for i, w in enumerate(x_words)], tag
        assert ctx.get(flags.y_valid) and ctx.get(dut.y_count) == 2, tag
        x_fires = [i for i, edge in enumerate(cycles[start:]) if edge[0]]
        y_fires = [i for i, edge in enumerate(cycles[start:]) if edge[1]]
        assert ctx.get(dut.cycles) == y_fires[-1] - x_fires[0] + 1, tag
        assert await run(ctx, y_words[:1], last_at=0) == Status.CORE_ERROR, f"{tag} early"
        assert await run(ctx, y_words, last_at=5) == Status.CORE_ERROR, f"{tag} no tlast"
        assert await run(ctx, y_words, alive=False) == Status.TIMEOUT, tag
        assert await run(ctx, y_words) == Status.OK, f"{tag} a run after the failures"
        assert ctx.get(flags.w_loaded), tag

    async def reply_sink(ctx):
        stall = pauses(stalls[1], f"{seed}/reply")
        while True:
            reply = await stream_get(ctx, dut.reply, stall=stall)
            replies.append((int(reply.status), int(reply.command)))

    async def core_x(ctx):
        stall = (not core["alive"] or pause for pause in pauses(stalls[1], f"{seed}/x"))
        while True:
            beat = await stream_get(ctx, dut.x, stall=stall)
            taken.append(AXIBeat(int(beat.data), int(beat.last)))

    async def core_y(ctx):
        idle = pauses(stalls[0], f"{seed}/y")
        while True:
            if core["y"] and len(taken) == SEQ["x_beats"]:
                await stream_put(ctx, dut.y, core["y"].popleft(), idle=idle)
            else:
                await ctx.tick()

    simulate(dut, [host], [reply_sink, core_x, core_y,
                           edges([dut.x.tvalid & dut.x.tready, dut.y.tvalid & dut.y.tready],
                                 cycles)],
             max_cycles=20_000, tag=tag)


# -- reply serialiser ------------------------------------------------------------------------

class _ReplyBench(Elaboratable):
    """The serialiser reading a y memory holding `y_words`."""

    def __init__(self, info, y_width, y_words):
        self.dut = ReplySerialiser(info=info, y_width=y_width, y_depth=len(y_words))
        self.y_words = y_words
        self.y_width = y_width

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.y_memory = memory = Memory(shape=self.y_width, depth=len(self.y_words),
                                                init=self.y_words)
        wiring.connect(m, self.dut.y_read, memory.read_port())
        return m


def test_reply_serialiser_rejects():
    with pytest.raises(ValueError, match="info must be non-empty bytes"):
        ReplySerialiser(info=b"", y_width=8, y_depth=1)
    with pytest.raises(ValueError, match="y_depth must be a positive integer, not 0"):
        ReplySerialiser(info=b"\x01", y_width=8, y_depth=0)


@pytest.mark.parametrize("y_width", [8, 13, 40])
@pytest.mark.parametrize("stall", [0.0, 0.6], ids=["free", "stalled"])
def test_reply_serialiser_sends_status_then_data(y_width, stall):
    seed = y_width + int(10 * stall)
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    info = bytes(rng.integers(0, 256, 7).astype(np.uint8))
    y_words = [int(v) for v in rng.integers(0, 1 << y_width, 5)]
    y_bytes = -(-y_width // 8)
    bench = _ReplyBench(info, y_width, y_words)
    dut = bench.dut
    requests = [(Status.OK, Command.READ_Y, 5), (Status.OK, Command.READ_Y, 0),
                (Status.OK, Command.READ_Y, 2), (Status.OK, Command.READ_CYCLES, 0),
                (Status.OK, Command.STATUS, 0), (Status.OK, Command.INFO, 0),
                (Status.OK, Command.LOAD_W, 0), (Status.BAD_LENGTH, Command.READ_Y, 3),
                (Status.TIMEOUT, Command.INFO, 0), (Status.BAD_STATE, Command.RUN, 0)]
    expected, sent, failed, edges_seen = [], bytearray(), [], []

    async def source(ctx):
        for status, command, y_count in requests:
            flags, w_beats = int(rng.integers(0, 64)), int(rng.integers(0, 1 << 16))
            cycles = int(rng.integers(0, 1 << 32))
            for port, value in ((dut.flags, flags), (dut.w_beats, w_beats),
                                (dut.cycles, cycles), (dut.y_count, y_count)):
                ctx.set(port, value)
            data = b""
            if status == Status.OK:
                data = {Command.READ_Y: y_count.to_bytes(2, "little") + b"".join(
                            w.to_bytes(y_bytes, "little") for w in y_words[:y_count]),
                        Command.READ_CYCLES: cycles.to_bytes(4, "little"),
                        Command.STATUS: bytes([flags]) + w_beats.to_bytes(2, "little"),
                        Command.INFO: info}.get(command, b"")
            expected.append(bytes([status]) + data)
            await stream_put(ctx, dut.request, {"status": status, "command": command})
            failed.append(ctx.get(dut.failed))

    async def sink(ctx):
        hold = pauses(stall, f"{seed}/tx")
        while True:
            sent.append(await stream_get(ctx, dut.tx, stall=hold))

    simulate(bench, [source], [sink, edges([dut.request.valid & dut.request.ready,
                                            dut.tx.valid & dut.tx.ready], edges_seen)],
             max_cycles=20_000, tag=tag)
    assert bytes(sent) == b"".join(expected), tag
    assert failed == [status != Status.OK for status, _, _ in requests], tag
    # Each request is taken at the edge that takes its last byte, not before.
    ends = np.cumsum([len(reply) for reply in expected]).tolist()
    tx_count = np.cumsum([tx for _, tx in edges_seen])
    assert [int(tx_count[i]) for i, (taken, _) in enumerate(edges_seen) if taken] == ends, tag


# -- the whole link, with a core -------------------------------------------------------------

class _LinkBench(Elaboratable):
    """A :class:`HostLink` and the BBS core it resets, joined as in the board top."""

    def __init__(self, config, **link_options):
        self.link = HostLink(config, **link_options)
        self.core = BBSSpMV(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.core = ResetInserter(link.core_reset)(self.core)
        wiring.connect(m, link.x, self.core.s_axis_x)
        wiring.connect(m, link.w, self.core.s_axis_w)
        wiring.connect(m, self.core.m_axis_y, link.y)
        m.d.comb += link.core_error.eq(self.core.error)
        return m


class _SimTransport:
    """The host driver's async byte transport on the link's `rx` and `tx` streams, with
    random idle cycles between request bytes and random back-pressure on reply bytes."""

    def __init__(self, ctx, link, seed):
        self.ctx = ctx
        self.link = link
        self.idle = pauses(0.3, f"{seed}/rx")
        self.stall = pauses(0.5, f"{seed}/tx")

    async def write(self, data: bytes) -> None:
        for byte in data:
            await stream_put(self.ctx, self.link.rx, byte, idle=self.idle)

    async def read(self, count: int) -> bytes:
        return bytes([await stream_get(self.ctx, self.link.tx, stall=self.stall)
                      for _ in range(count)])


def test_host_link_rejects_an_engine_without_fixed_rows():
    with pytest.raises(ValueError, match="config.pattern must be 'bbs' .*'unstructured'"):
        HostLink(Config(lanes=2, pes=1, cols=16, pattern="unstructured"), max_w_beats=8,
                 timeout_cycles=100)


def test_host_link_with_core_over_the_host_driver():
    config = Config(lanes=2, pes=2, cols=16, bank_size=4, nnz_per_bank=1, out_width=12,
                    out_shift=2, relu=True)
    seed, timeout = 2024, 64
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    bench = _LinkBench(config, max_w_beats=16, timeout_cycles=timeout)
    link = bench.link
    latency = BBSSpMV.latency_of(config)

    async def host_bench(ctx):
        async def expect(operation, status, what):
            with pytest.raises(BoardError) as error:
                await operation
            assert error.value.status == status, f"{tag} {what}: {error.value}"
            assert ctx.get(link.failed) == 1, f"{tag} {what}: the failed output"

        transport = _SimTransport(ctx, link, seed)
        host = AsyncHost(transport, config)
        info = await host.check()
        assert info.max_w_beats == 16
        assert await host.status() == (Flags(0), 0)
        await expect(host.run(), Status.BAD_STATE, "RUN with nothing loaded")
        rows = 2 * config.pes * 3 - 1  # a padded last row group
        W = prune_bbs(rng.integers(-128, 128, (rows, config.cols)), config.bank_size,
                      config.nnz_per_bank)
        w_beats = await host.load_weights(W)
        for k in range(2):
            x = rng.integers(-128, 128, config.cols)
            y, cycles = await host.spmv(x)
            assert np.array_equal(y, spmv(config, W, x)), f"{tag} vector {k}"
            assert cycles == config.x_beats + w_beats + latency, f"{tag} {cycles} cycles"
            assert ctx.get(link.failed) == 0 and ctx.get(link.busy) == 0
        assert await host.status() == (Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID,
                                       w_beats)

        assert await host.raw(frame(0x7E, 3, b"abc")) == Status.BAD_COMMAND
        assert await host.raw(frame(Command.LOAD_W, 1, bytes(5))) == Status.BAD_LENGTH
        await transport.write(frame(Command.LOAD_X, config.x_beats, b"\x01"))  # cut short
        assert await transport.read(1) == bytes([Status.TIMEOUT]), tag
        # Both loads failed, and each forgot its matrix or vector at its command byte.
        flags, _ = await host.status()
        assert flags == Flags.Y_VALID, f"{tag} {flags!r}"
        await expect(host.run(), Status.BAD_STATE, "RUN after the failed loads")
        assert await host.load_weights(W) == w_beats
        x = rng.integers(-128, 128, config.cols)
        y, _ = await host.spmv(x)
        assert np.array_equal(y, spmv(config, W, x)), f"{tag} after the errors"

    simulate(bench, [host_bench], max_cycles=60_000, tag=tag)


class _ModelLinkBench(Elaboratable):
    """A :class:`ModelHostLink` and the model core it resets, joined as in the model board
    top."""

    def __init__(self, model, **link_options):
        self.link = ModelHostLink(model, **link_options)
        self.core = ModelCore(model)

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.core = ResetInserter(link.core_reset)(self.core)
        wiring.connect(m, link.x, self.core.s_axis_x)
        wiring.connect(m, self.core.m_axis_y, link.y)
        m.d.comb += link.core_error.eq(self.core.error)
        return m


def test_model_host_link_with_model_core_over_the_host_driver():
    """INFO version 2, LOAD_W refused, inferences equal to the golden forward pass, the
    single-matrix driver refused, through the real model driver."""
    model = random_model(7, sizes=(12, 10, 6), lanes=2, pes=2, bank_size=4, nnz=2)
    seed, timeout = 4048, 400
    tag = f"[seed {seed}]"
    rng = np.random.default_rng(seed)
    bench = _ModelLinkBench(model, input_exponent=-6, output_exponent=-11,
                            timeout_cycles=timeout)
    link = bench.link
    assert "w" not in link.signature.members

    async def host_bench(ctx):
        transport = _SimTransport(ctx, link, seed)
        host = AsyncModelHost(transport)
        info = await host.info()
        assert (info.inputs, info.outputs, info.layers, info.input_exponent,
                info.output_exponent) == (12, 6, 2, -6, -11), f"{tag} {info}"
        assert await host.status() == (Flags.W_LOADED, 0)
        assert await host.raw(frame(Command.LOAD_W, 2, b"\x01\x02")) == Status.BAD_COMMAND
        assert ctx.get(link.failed) == 1
        cycle_counts = set()
        for k in range(3):
            x = rng.integers(-128, 128, model.inputs)
            y, cycles = await host.infer(x)
            assert np.array_equal(y, model.forward(x)), f"{tag} input {k}: {y} != " \
                                                        f"{model.forward(x)}"
            assert ctx.get(link.failed) == 0 and ctx.get(link.busy) == 0
            cycle_counts.add(cycles)
        assert len(cycle_counts) == 1, f"{tag} runs took {cycle_counts} cycles"
        assert await host.status() == (Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID, 0)
        with pytest.raises(LinkError, match="model board .*use ModelHost"):
            await AsyncHost(transport).info()
        # A LOAD_X cut short: TIMEOUT, and the vector is forgotten.
        await transport.write(frame(Command.LOAD_X, info.x_beats, b"\x01"))
        assert await transport.read(1) == bytes([Status.TIMEOUT]), tag
        with pytest.raises(BoardError, match="RUN: the board answered BAD_STATE"):
            await host.run()
        x = rng.integers(-128, 128, model.inputs)
        y, _ = await host.infer(x)
        assert np.array_equal(y, model.forward(x)), f"{tag} after the errors"

    simulate(bench, [host_bench], max_cycles=60_000, tag=tag)
