"""Drivers and monitors for Amaranth `lib.stream` ports as the Verilog backend flattens them.

A stream member ``req`` becomes ``req__payload`` (one packed vector), ``req__valid`` and
``req__ready``; those names do not fit cocotbext-axi's AXI-Stream buses, and at the sizes of
the unit testbenches a coroutine per stream is fast enough. A beat moves at the rising edge
that ends a cycle in which valid and ready are both high.

Every process works cycle by cycle in two steps: right after a rising edge it drives its
outputs for the new cycle, then at ``ReadOnly`` (everything settled, combinational ready
paths included) it sees whether the beat moves at the next edge. So no process relies on
reading values "just before the edge".

:func:`pack` and :func:`unpack` convert between the packed vector and named fields, from the
layout description :func:`bbsparse.tb.cocotb_run.payload_fields` derives from the
component's own signature (so the bit order is declared once, in the HDL).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge

__all__ = ["Clocked", "StreamSink", "StreamSource", "pack", "pause_pattern", "unpack"]


def pack(fields: list[list], values: dict) -> int:
    """The packed vector of `values` (name -> int, or list of ints for an array field)."""
    word = 0
    for name, offset, width, count in fields:
        items = values[name]
        items = list(items) if count > 1 or isinstance(items, list | tuple) else [items]
        if len(items) != count:
            raise ValueError(f"field {name!r} has {count} elements, not {len(items)}")
        mask = (1 << width) - 1
        for i, item in enumerate(items):
            item = int(item)
            if item & ~mask:
                raise ValueError(f"{name}[{i}] = {item} does not fit {width} bits")
            word |= item << (offset + i * width)
    return word


def unpack(fields: list[list], word: int) -> dict:
    """The fields of packed `word`: an int per plain field, a list per array field."""
    out = {}
    for name, offset, width, count in fields:
        mask = (1 << width) - 1
        items = [(word >> (offset + i * width)) & mask for i in range(count)]
        out[name] = items if count > 1 else items[0]
    return out


def params_from_env(cls):
    """The testbench's parameters dataclass `cls`, from the JSON the pytest side put in the
    environment (:data:`bbsparse.tb.cocotb_run.PARAMS_ENV`); JSON lists become the tuples
    the dataclass declares for `burst_len`."""
    import json
    import os

    from .cocotb_run import PARAMS_ENV

    raw = json.loads(os.environ[PARAMS_ENV])
    if "burst_len" in raw:
        raw["burst_len"] = tuple(raw["burst_len"])
    return cls(**raw)


def pause_pattern(rng: random.Random, probability: float, max_run: int = 1,
                  burst: float = 0.0, burst_len: tuple[int, int] = (20, 60)) -> Iterator[bool]:
    """True = pause this cycle. With `probability` a run of 1..`max_run` pauses starts; with
    `burst` a long run of `burst_len` (inclusive) pauses."""
    while True:
        if burst > 0 and rng.random() < burst:
            yield from [True] * rng.randint(*burst_len)
        elif probability > 0 and rng.random() < probability:
            yield from [True] * rng.randint(1, max_run)
        yield False


class Clocked:
    """Counts rising edges; `cycle` read at ReadOnly is the number of the current cycle."""

    def __init__(self, clk):
        self.clk = clk
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self):
        edge = RisingEdge(self.clk)
        while True:
            await edge
            self.cycle += 1


class StreamSource:
    """Drives ``<prefix>__payload`` and ``__valid`` from a queue of packed beats.

    Once valid, a beat stays on the bus until taken (no withdrawn beats). Between beats the
    pause pattern may hold valid low. `on_accept(beat, cycle)` is called at ReadOnly of the
    cycle whose closing edge takes the beat.
    """

    def __init__(self, dut, prefix: str, clock: Clocked,
                 on_accept: Callable[[int, int], None] | None = None):
        self.clock = clock
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.width = len(self.payload)
        self.on_accept = on_accept
        self.queue: deque[int] = deque()
        self.sent = 0  # beats ever queued
        self.pauses: Iterator[bool] = iter(lambda: False, True)
        self.accepted = 0
        self.held = 0  # cycles a beat was offered but not taken (back-pressure seen)
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def set_pauses(self, pauses: Iterator[bool]):
        self.pauses = pauses

    def send(self, beats):
        for beat in beats:
            if not 0 <= beat < 1 << self.width:
                raise ValueError(f"beat {beat:#x} does not fit {self.width} bits")
            self.queue.append(beat)
            self.sent += 1
        if self.queue:
            self._idle.clear()

    async def wait(self):
        """Until every queued beat has been taken."""
        await self._idle.wait()

    async def _run(self):
        edge, settled = RisingEdge(self.clock.clk), ReadOnly()
        current = None
        while True:
            await edge
            if current is None and self.queue and not next(self.pauses):
                current = self.queue.popleft()
                self.payload.value = current
            self.valid.value = int(current is not None)
            await settled
            if current is None:
                continue
            if self.ready.value:
                self.accepted += 1
                if self.on_accept is not None:
                    self.on_accept(current, self.clock.cycle)
                current = None
                if not self.queue:
                    self._idle.set()
            else:
                self.held += 1


class StreamSink:
    """Drives ``<prefix>__ready`` from a pause pattern and records every beat that moves.

    `beats` holds (cycle, packed beat) in arrival order; nothing is dropped or merged, so a
    checker sees duplicated and lost beats as they are.
    """

    def __init__(self, dut, prefix: str, clock: Clocked,
                 on_beat: Callable[[int, int], None] | None = None):
        self.clock = clock
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.on_beat = on_beat
        self.pauses: Iterator[bool] = iter(lambda: False, True)
        self.beats: list[tuple[int, int]] = []
        self.held = 0  # cycles valid was high but ready low
        self._arrived = Event()
        self._wanted = 0
        self.ready.value = 0
        cocotb.start_soon(self._run())

    def set_pauses(self, pauses: Iterator[bool]):
        self.pauses = pauses

    async def wait_for(self, count: int):
        """Until `count` beats have arrived in total."""
        self._wanted = count
        if len(self.beats) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def _run(self):
        edge, settled = RisingEdge(self.clock.clk), ReadOnly()
        while True:
            await edge
            ready = not next(self.pauses)
            self.ready.value = int(ready)
            await settled
            if not self.valid.value:
                continue
            if not ready:
                self.held += 1
                continue
            beat = int(self.payload.value)
            self.beats.append((self.clock.cycle, beat))
            if self.on_beat is not None:
                self.on_beat(beat, self.clock.cycle)
            if len(self.beats) >= self._wanted:
                self._arrived.set()
