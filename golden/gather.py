"""The gather unit (DESIGN §6): `lanes` reads per cycle from `lanes` banked memories.

*Banked* mode is the BBS case: lane ``l`` only ever reads bank ``l``, so every cycle serves
every lane. *Crossbar* mode routes a global index ``i`` to bank ``i % lanes``, address
``i // lanes``, and an arbiter serialises requests that collide on a bank.

The arbiter rule (shared with the scatter unit, :func:`crossbar_schedule`):

- requests come in rows of ``lanes`` (one row per cycle when nothing collides) and rows
  are served strictly in order: a row starts only once the previous row is fully served;
- in each cycle, every bank serves the lowest pending lane of the current row that
  addresses it; a later lane that collides on a bank already used this cycle waits;
- there is no read combining: two requests for the same address are two requests.

So a row takes as many cycles as the largest number of its requests that fall on one bank,
and the stall cycles are the cycles beyond one per row.
"""

from __future__ import annotations

import numpy as np

from .arith import as_integers

__all__ = [
    "check_requests",
    "crossbar_schedule",
    "gather_banked",
    "gather_crossbar",
    "schedule_cycles",
]


def check_requests(indices, lanes: int, size: int, name: str = "indices") -> np.ndarray:
    """`indices` as an int64 ``(rows, lanes)`` array of positions in ``range(size)``."""
    if isinstance(lanes, bool) or not isinstance(lanes, int | np.integer) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    indices = as_integers(indices, name)
    if indices.ndim != 2 or indices.shape[1] != lanes:
        raise ValueError(f"{name} must be (rows, lanes = {lanes}), not shape {indices.shape}")
    bad = (indices < 0) | (indices >= size)
    if bad.any():
        row, lane = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{row}, {lane}] = {indices[row, lane]} is outside the memory (0..{size - 1})"
        )
    return indices.astype(np.int64)


def crossbar_schedule(indices, lanes: int, mask=None) -> np.ndarray:
    """The cycle (counted from 0) in which the arbiter serves each crossbar request.

    `indices` is ``(rows, lanes)``; the result has the same shape. See the module docstring
    for the rule. Invariant: no two requests of one bank share a cycle. `mask` (same shape,
    boolean) says which lanes request at all; a row with no request still takes one cycle.
    """
    indices = check_requests(indices, lanes, np.iinfo(np.int64).max)
    requesting = np.ones(indices.shape, bool) if mask is None else np.asarray(mask, bool)
    if requesting.shape != indices.shape:
        raise ValueError(f"mask must have the shape of the requests {indices.shape}, "
                         f"not {requesting.shape}")
    bank = indices % lanes
    same_bank = (bank[:, :, None] == bank[:, None, :]) & requesting[:, None, :]
    lower_lane = np.tri(lanes, k=-1, dtype=bool)  # [l, l'] is True where l' < l
    # A request waits one cycle for each lower lane of its row that wants the same bank.
    rank = np.where(requesting, (same_bank & lower_lane).sum(axis=-1), 0)
    row_cycles = rank.max(axis=1, initial=0) + 1
    row_start = np.cumsum(row_cycles) - row_cycles
    return row_start[:, None] + rank


def schedule_cycles(schedule: np.ndarray) -> tuple[int, int]:
    """(total cycles, stall cycles) of a schedule: one cycle per row is not a stall."""
    cycles = int(schedule.max()) + 1 if schedule.size else 0
    return cycles, cycles - schedule.shape[0]


def gather_banked(banks, addrs) -> np.ndarray:
    """Banked gather: ``data[c, l] = banks[l, addrs[c, l]]``, every request in its own cycle.

    `banks` is ``(lanes, depth)``; `addrs` is ``(cycles, lanes)``. Lane ``l`` reads only
    bank ``l``, so there is never a conflict.
    """
    banks = np.asarray(banks)
    if banks.ndim != 2:
        raise ValueError(f"banks must be (lanes, depth), not shape {banks.shape}")
    lanes, depth = banks.shape
    addrs = check_requests(addrs, lanes, depth, "addrs")
    return banks[np.arange(lanes)[None, :], addrs]


def gather_crossbar(memory_flat, indices, lanes: int) -> tuple[np.ndarray, int, int]:
    """Crossbar gather: (data, cycles, stall_cycles) for requests `indices` ``(rows, lanes)``.

    Index ``i`` of `memory_flat` lives in bank ``i % lanes`` at address ``i // lanes``.
    `data` is ``memory_flat[indices]``, returned in request order whatever the service
    order; `cycles` follows :func:`crossbar_schedule` and ``stall_cycles = cycles - rows``.
    """
    memory_flat = np.asarray(memory_flat)
    if memory_flat.ndim != 1:
        raise ValueError(f"memory_flat must be 1-D, not shape {memory_flat.shape}")
    indices = check_requests(indices, lanes, memory_flat.size)
    cycles, stalls = schedule_cycles(crossbar_schedule(indices, lanes))
    return memory_flat[indices], cycles, stalls
