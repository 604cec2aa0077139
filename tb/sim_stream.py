"""Stream helpers for Amaranth-simulator testbenches (``sim.add_testbench``).

:func:`stream_put` offers one beat on a stream and returns when it has been taken;
:func:`stream_get` takes one beat and returns it. Both work on any interface with the members
of an Amaranth :class:`amaranth.lib.stream.Signature` (``valid``, ``ready``, ``payload``) or of
an AXI4-Stream (``tvalid``, ``tready``, ``tdata``, ``tlast``), told apart by their member names
only. A beat moves at the clock edge at which valid and ready are both high; the helpers
sample that at the edge, so they never read values "just before the edge".

Back-pressure and idle cycles come from a *pause generator*: an iterator of booleans, one
per cycle, true for a cycle without a beat (an idle cycle before a beat is offered, or a
cycle with ``ready`` low). :func:`pauses` makes a random one from a seed, so that a failure
replays.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["AXIBeat", "pauses", "stream_get", "stream_put"]


class AXIBeat(NamedTuple):
    """One AXI4-Stream transfer: ``tdata`` and ``tlast``."""
    data: int
    last: int = 0


def pauses(probability: float, seed: int | str | None) -> Iterator[bool]:
    """An endless pause generator: each cycle paused with `probability`, from
    ``random.Random(seed)`` (print the seed in the failure message)."""
    if not 0 <= probability < 1:
        raise ValueError(f"probability must be at least 0 and below 1, not {probability!r}")
    rng = random.Random(seed)
    while True:
        yield probability > 0 and rng.random() < probability


def _is_axi(stream) -> bool:
    return "tvalid" in stream.signature.members


def _handshake(stream):
    return (stream.tvalid, stream.tready) if _is_axi(stream) else (stream.valid, stream.ready)


async def stream_put(ctx, stream, payload, *, idle: Iterator[bool] | None = None) -> None:
    """Drive `stream` as its source: offer `payload` (for an AXI4-Stream an
    :class:`AXIBeat` or a ``(tdata, tlast)`` pair) until it is taken. Before the beat,
    `idle` may hold ``valid`` low for some cycles (as many as it yields true in a row).
    Returns right after the edge at which the beat moved, with ``valid`` low again."""
    valid, ready = _handshake(stream)
    if idle is not None:
        while next(idle):
            ctx.set(valid, 0)
            await ctx.tick()
    if _is_axi(stream):
        data, last = payload
        ctx.set(stream.tdata, data)
        ctx.set(stream.tlast, last)
    else:
        ctx.set(stream.payload, payload)
    ctx.set(valid, 1)
    # (Not ``tick().until()``: its async generator complains when a failing simulation
    # abandons it.)
    while not (await ctx.tick().sample(ready))[2]:
        pass
    ctx.set(valid, 0)


async def stream_get(ctx, stream, *, stall: Iterator[bool] | None = None):
    """Drive `stream` as its sink: take one beat and return its payload (for an AXI4-Stream
    an :class:`AXIBeat`; for a layout payload the simulator's constant view of it, for a
    plain one an int). Each cycle `stall` may hold ``ready`` low. Returns right after the
    edge at which the beat moved, with ``ready`` low again."""
    valid, ready = _handshake(stream)
    sampled = (stream.tdata, stream.tlast) if _is_axi(stream) else (stream.payload,)
    while True:
        taking = stall is None or not next(stall)
        ctx.set(ready, int(taking))
        _, _, moved, *values = await ctx.tick().sample(valid, *sampled)
        if taking and moved:
            ctx.set(ready, 0)
            return AXIBeat(*values) if _is_axi(stream) else values[0]
