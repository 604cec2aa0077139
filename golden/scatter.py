"""The scatter unit (DESIGN §6): `lanes` writes or accumulations per cycle into banks.

The mirror image of :mod:`bbsparse.golden.gather`, with the same banked and crossbar modes
and the same arbiter (:func:`~bbsparse.golden.gather.crossbar_schedule`). Requests are
ordered row by row, lane by lane ("request order"):

- accumulate: every update is added, even when several hit one address in one cycle or in
  back-to-back cycles (the hardware's hazard handling must never lose one);
- plain write: the last request in request order wins. The arbiter serves the lanes of a
  bank in lane order and rows in order, so this is also the order the writes land in.

Arithmetic is in the memory's dtype.
"""

from __future__ import annotations

import numpy as np

from .gather import check_requests, crossbar_schedule, schedule_cycles

__all__ = ["scatter_banked", "scatter_crossbar"]


def _values(values, shape: tuple[int, ...]) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != shape:
        raise ValueError(f"values must have the shape of the requests {shape}, not {values.shape}")
    return values


def _update(memory: np.ndarray, positions: np.ndarray, values: np.ndarray, accumulate: bool):
    """Apply updates in request order to flat `memory` in place."""
    positions = positions.ravel()
    values = values.ravel()
    if accumulate:
        # add.at adds once per occurrence, unlike memory[positions] += values.
        np.add.at(memory, positions, values)
        return
    # The first occurrence in the reversed list is the last write to each position.
    _, first_reversed = np.unique(positions[::-1], return_index=True)
    last = positions.size - 1 - first_reversed
    memory[positions[last]] = values[last]


def scatter_banked(banks, addrs, values, accumulate: bool) -> np.ndarray:
    """Banked scatter: lane ``l`` writes (or adds) ``values[c, l]`` at ``banks[l, addrs[c, l]]``.

    `banks` is ``(lanes, depth)``; `addrs` and `values` are ``(cycles, lanes)``. Returns the
    updated copy of `banks`; lanes never share a bank, so there is nothing to arbitrate.
    """
    banks = np.array(banks)
    if banks.ndim != 2:
        raise ValueError(f"banks must be (lanes, depth), not shape {banks.shape}")
    lanes, depth = banks.shape
    addrs = check_requests(addrs, lanes, depth, "addrs")
    values = _values(values, addrs.shape)
    flat = banks.reshape(-1)
    _update(flat, np.arange(lanes)[None, :] * depth + addrs, values, accumulate)
    return flat.reshape(lanes, depth)


def scatter_crossbar(
    memory_flat, indices, values, lanes: int, accumulate: bool, mask=None
) -> tuple[np.ndarray, int, int]:
    """Crossbar scatter: (memory, cycles, stall_cycles) after updates ``(rows, lanes)``.

    Index ``i`` of `memory_flat` lives in bank ``i % lanes``; the cycles follow the gather
    arbiter. `mask` (same shape, boolean) says which lanes carry an update at all. Returns
    an updated copy of `memory_flat`.
    """
    memory = np.array(memory_flat)
    if memory.ndim != 1:
        raise ValueError(f"memory_flat must be 1-D, not shape {memory.shape}")
    indices = check_requests(indices, lanes, memory.size)
    values = _values(values, indices.shape)
    requesting = np.ones(indices.shape, bool) if mask is None else np.asarray(mask, bool)
    cycles, stalls = schedule_cycles(crossbar_schedule(indices, lanes, requesting))
    _update(memory, indices[requesting], values[requesting], accumulate)
    return memory, cycles, stalls
