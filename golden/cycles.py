"""Cycle and utilization figures of DESIGN §7 for an ideal core (no pipeline fill).

One w beat is consumed per cycle, and one x beat is loaded per cycle. These are the
bounds the measured cycle counts of the RTL are compared with: the measured figure adds
pipeline latency and any stall, never less.
"""

from __future__ import annotations

import numbers

__all__ = [
    "dense_cycles",
    "dense_steady_cycles",
    "ideal_cycles",
    "overlapped_cycles",
    "steady_cycles",
    "useful_macs",
    "utilization",
]


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_batch(batch: int) -> None:
    _check_positive("batch", batch)


def overlapped_cycles(x_beats: int, w_beats: int, batch: int) -> int:
    """Cycles for `batch` SpMVs when the next x loads while the current matrix streams.

    The first x cannot overlap anything; after that, each further x hides behind the
    previous matrix and only its excess over the matrix (if x is the longer) shows.
    """
    _check_batch(batch)
    return x_beats + batch * w_beats + (batch - 1) * max(0, x_beats - w_beats)


def steady_cycles(cfg, rows: int, batch: int = 1) -> int:
    """Cycles spent streaming the matrix: ``batch * row_groups(rows) * cycles_per_row``."""
    _check_batch(batch)
    return batch * cfg.row_groups(rows) * cfg.cycles_per_row


def ideal_cycles(cfg, rows: int, batch: int = 1) -> int:
    """Cycles of `batch` SpMVs on an ideal core: x load plus w stream, perfectly overlapped.

    ``x_beats + batch*W + (batch-1)*max(0, x_beats - W)`` with
    ``W = row_groups(rows) * cycles_per_row`` (the w beats of one matrix).
    """
    w_beats = cfg.row_groups(rows) * cfg.cycles_per_row
    return overlapped_cycles(cfg.x_beats, w_beats, batch)


def dense_steady_cycles(cfg, rows: int, batch: int = 1) -> int:
    """:func:`steady_cycles` of the same array on the dense matrix (every slot kept)."""
    _check_batch(batch)
    return batch * cfg.row_groups(rows) * cfg.rounds * cfg.bank_size


def dense_cycles(cfg, rows: int, batch: int = 1) -> int:
    """:func:`ideal_cycles` of the same array on the dense matrix (nnz_per_bank = bank_size)."""
    w_beats = cfg.row_groups(rows) * cfg.rounds * cfg.bank_size
    return overlapped_cycles(cfg.x_beats, w_beats, batch)


def useful_macs(cfg, rows: int, batch: int = 1) -> int:
    """Multiply-accumulates that belong to the matrix: every slot of every real bank and row.

    ``batch * rows * banks_per_row * nnz_per_bank``; padding rows and padding banks do not
    count, zero-valued slots do (the pattern promises them, DESIGN §1).
    """
    _check_batch(batch)
    cfg.row_groups(rows)  # validates rows
    return batch * rows * cfg.banks_per_row * cfg.nnz_per_bank


def utilization(cfg, rows: int, cycles: int, batch: int = 1) -> float:
    """useful MACs / (multipliers x cycles): the fraction of the array doing real work.

    Pass :func:`ideal_cycles` or a measured count for the whole SpMV, or
    :func:`steady_cycles` for the steady state.
    """
    _check_positive("cycles", cycles)
    return useful_macs(cfg, rows, batch) / (cfg.multipliers * cycles)
