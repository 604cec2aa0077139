"""The row-wise compressed stream of the unstructured engine, and its cycle model.

The unstructured engine (``pattern = "unstructured"``) keeps the PEs, multipliers and
output stage of the BBS core but fetches activations through the crossbar gather, so any
column can be used by any lane. Its wire formats (specified in DESIGN §9.3):

- **x**: ``x_beats = ceil(cols / lanes)`` beats of ``lanes`` activations, in order: beat
  ``t``, lane ``l`` is ``x[t*lanes + l]`` (zero past ``cols``). Column ``j`` then sits in
  bank ``j % lanes`` at address ``j // lanes``, where the crossbar looks for it.
- **w**: rows in groups of ``pes`` (row ``g*pes + p`` to PE ``p``). A row's nonzeros fill
  its lanes ``lanes`` at a time, in any order (the hardware takes whatever comes); a group
  takes as many beats as its longest row, shorter rows padded with zero entries, and at
  least one. The packer orders them one of two ways:

  - ``order="banks"`` (default): beat ``s`` of a row takes the ``s``-th nonzero of each
    bank (column mod lanes), so no beat has a bank conflict and a row takes as many beats
    as its busiest bank holds nonzeros: the fewest cycles the crossbar allows;
  - ``order="columns"``: nonzeros in column order, ``lanes`` a beat; fewer beats, but
    beats with colliding columns cost the crossbar extra cycles.

  Entry ``p*lanes + l`` is ``value | column << weight_width`` (``index_width = ceil(log2
  cols)`` column bits); above all entries one bit marks the last beat of the row group.
  A zero-valued entry is padding: it fetches nothing. ``tlast`` marks the last beat of the
  matrix.
- **y**: as for BBS, one beat of ``pes`` results per row group.
"""

from __future__ import annotations

import numpy as np

from .arith import as_integers, check_signed
from .csb import pack_fields
from .gather import crossbar_schedule

__all__ = [
    "pack_x",
    "column_order_x",
    "pack_w",
    "unpack_w",
    "w_beat_ints",
    "x_beat_ints",
    "beat_cycles",
    "stream_cycles",
]


def _require_unstructured(cfg) -> None:
    if cfg.pattern != "unstructured":
        raise ValueError(f"this format is the unstructured engine's; the configuration has "
                         f"pattern = {cfg.pattern!r}")


def pack_x(cfg, x) -> np.ndarray:
    """x fields ``(x_beats, lanes)`` (or ``(batch, x_beats, lanes)``), in column order."""
    _require_unstructured(cfg)
    return column_order_x(cfg, x)


def column_order_x(cfg, x) -> np.ndarray:
    """x in column order, `lanes` a beat (beat ``t``, lane ``l`` is ``x[t*lanes + l]``, zero
    past ``cols``): fields ``(x_beats, lanes)``, or ``(batch, x_beats, lanes)`` for a batch.
    The x format of the engines whose lanes take consecutive columns (unstructured, cbs)."""
    x = as_integers(x, "x")
    if x.ndim not in (1, 2) or x.shape[-1] > cfg.cols:
        raise ValueError(f"x must be (cols,) or (batch, cols) with cols <= {cfg.cols}, "
                         f"not shape {x.shape}")
    check_signed(x, cfg.act_width, "x", "act_width")
    batch = np.atleast_2d(x)
    padded = np.zeros((batch.shape[0], cfg.x_beats * cfg.lanes), dtype=np.int64)
    padded[:, :batch.shape[1]] = batch
    beats = padded.reshape(batch.shape[0], cfg.x_beats, cfg.lanes)
    return beats[0] if x.ndim == 1 else beats


def x_beat_ints(cfg, beats) -> list[int]:
    """``tdata`` of x beats (a batch gives its frames in turn)."""
    beats = as_integers(beats, "beats")
    return pack_fields(beats.reshape(-1, cfg.lanes), cfg.act_width)


ORDERS = ("banks", "columns")


def _row_slots(columns: np.ndarray, lanes: int, order: str) -> tuple[np.ndarray, np.ndarray]:
    """(beat, lane) of each of a row's nonzero `columns` (ascending)."""
    if order == "columns":
        slots = np.arange(len(columns))
        return slots // lanes, slots % lanes
    # The k-th nonzero of bank b goes to beat k, lane b: one request per bank per beat.
    banks = columns % lanes
    beat = np.zeros(len(columns), np.int64)
    for bank in range(lanes):
        members = np.flatnonzero(banks == bank)
        beat[members] = np.arange(len(members))
    return beat, banks


def pack_w(cfg, W, order: str = "banks") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, columns, group_end) of the row-wise stream: ``(beats, pes*lanes)`` twice and
    ``(beats,)``. Rows are padded to a multiple of pes with empty rows; `order` is the
    module docstring's."""
    _require_unstructured(cfg)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    W = as_integers(W, "W")
    if W.ndim != 2 or W.shape[1] > cfg.cols or W.shape[0] < 1:
        raise ValueError(f"W must be (rows, cols) with cols <= {cfg.cols}, not shape {W.shape}")
    check_signed(W, cfg.weight_width, "W", "weight_width")
    lanes, pes = cfg.lanes, cfg.pes
    groups = cfg.row_groups(W.shape[0])
    values, columns, ends = [], [], []
    for group in range(groups):
        rows = [group * pes + p for p in range(pes)]
        nonzeros = [np.flatnonzero(W[r]) if r < W.shape[0] else np.zeros(0, np.int64)
                    for r in rows]
        slots = [_row_slots(cols, lanes, order) for cols in nonzeros]
        beats = max(1, max((int(beat.max()) + 1 for beat, _ in slots if len(beat)), default=1))
        group_values = np.zeros((beats, pes * lanes), np.int64)
        group_columns = np.zeros((beats, pes * lanes), np.int64)
        for p, (row, cols, (beat, lane)) in enumerate(zip(rows, nonzeros, slots, strict=True)):
            if len(cols):  # padding rows past the matrix have none
                group_values[beat, p * lanes + lane] = W[row, cols]
                group_columns[beat, p * lanes + lane] = cols
        values.append(group_values)
        columns.append(group_columns)
        end = np.zeros(beats, bool)
        end[-1] = True
        ends.append(end)
    return np.concatenate(values), np.concatenate(columns), np.concatenate(ends)


def unpack_w(cfg, values, columns, group_end, rows: int, cols: int | None = None) -> np.ndarray:
    """The matrix a row-wise stream describes (inverse of :func:`pack_w`)."""
    _require_unstructured(cfg)
    values = as_integers(values, "values")
    columns = as_integers(columns, "columns")
    group_end = np.asarray(group_end, bool)
    pes, lanes = cfg.pes, cfg.lanes
    W = np.zeros((cfg.row_groups(rows) * pes, cfg.cols), np.int64)
    group = 0
    for beat in range(values.shape[0]):
        for p in range(pes):
            for lane in range(lanes):
                value = values[beat, p * lanes + lane]
                if value:
                    W[group * pes + p, columns[beat, p * lanes + lane]] += value
        group += int(group_end[beat])
    return W[:rows, :cfg.cols if cols is None else cols]


def w_beat_ints(cfg, values, columns, group_end) -> list[int]:
    """``tdata`` of the w beats: entries ``value | column << weight_width``, then the
    group-end bit above all ``pes*lanes`` entries."""
    _require_unstructured(cfg)
    values = as_integers(values, "values")
    columns = as_integers(columns, "columns")
    entries = (values & ((1 << cfg.weight_width) - 1)) | (columns << cfg.weight_width)
    top = cfg.pes * cfg.lanes * cfg.w_entry_width
    return [word | (int(end) << top)
            for word, end in zip(pack_fields(entries, cfg.w_entry_width), group_end,
                                 strict=True)]


def beat_cycles(cfg, values, columns) -> np.ndarray:
    """Cycles the crossbar spends on each w beat: every PE's lanes arbitrate on that PE's
    own banks (golden.gather rule), the PEs in lockstep, so a beat takes as long as its
    busiest bank in any PE; padding entries (value 0) fetch nothing."""
    values = as_integers(values, "values")
    columns = as_integers(columns, "columns")
    lanes = cfg.lanes
    per_pe = []
    for p in range(cfg.pes):
        part = slice(p * lanes, (p + 1) * lanes)
        schedule = crossbar_schedule(columns[:, part], lanes, values[:, part] != 0)
        # The schedule counts from the first row; per-row lengths are its steps.
        ends = schedule.max(axis=1) + 1
        per_pe.append(np.diff(np.concatenate([[0], ends])))
    return np.max(per_pe, axis=0)


def stream_cycles(cfg, values, columns) -> tuple[int, int]:
    """(cycles, stall cycles) of one w frame through the crossbar: stalls are the cycles
    beyond one per beat."""
    lengths = beat_cycles(cfg, values, columns)
    return int(lengths.sum()), int(lengths.sum() - len(lengths))
