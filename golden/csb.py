"""The wire formats of DESIGN §3-4: the lane-transposed x, the CSB w stream and y.

Two levels, kept apart so that each can be checked on its own:

- *fields*: ``pack_x``/``pack_w`` turn a vector or matrix into arrays of beat fields
  (int64, one row per beat, one column per lane or entry), and ``unpack_*`` invert them;
- *beats*: ``pack_fields``/``unpack_fields`` turn field arrays into the Python integers
  that travel as ``tdata`` (element ``i`` at bits ``[i*width, (i+1)*width)``), and
  ``x_beat_ints``, ``w_beat_ints``, ``pack_y`` and their inverses apply them to each stream.

Field arrays are int64 unless a width beyond 64 bits forces Python integers (object
arrays). The last beat of each frame carries ``tlast``; these functions do not model it.
"""

from __future__ import annotations

import numpy as np

from .arith import INT64_BITS, as_integers, check_signed, wrap
from .prune import check_bbs

__all__ = [
    "PatternError",
    "pack_fields",
    "pack_w",
    "pack_x",
    "pack_y",
    "unpack_fields",
    "unpack_w",
    "unpack_x",
    "unpack_y",
    "w_beat_ints",
    "w_fields_from_ints",
    "x_beat_ints",
    "x_fields_from_ints",
    "x_layout",
]


class PatternError(ValueError):
    """A matrix the core cannot hold: some bank has more nonzeros than ``nnz_per_bank``."""


# -- x: lane-transposed vector (DESIGN §3) -------------------------------------------------


def x_layout(cfg, j):
    """(lane, address) of column `j` in the vector memories (DESIGN §3); `j` may be an array.

    ``x[j]`` lives in lane ``(j // bank_size) % lanes`` at address
    ``((j // bank_size) // lanes) * bank_size + j % bank_size``.
    """
    columns = np.asarray(j)
    if not np.issubdtype(columns.dtype, np.integer):
        raise ValueError(f"column indices must be integers, not {columns.dtype}")
    if columns.size and (columns.min() < 0 or columns.max() >= cfg.cols):
        raise ValueError(f"column index out of range 0..{cfg.cols - 1}: {j!r}")
    bank = columns // cfg.bank_size
    lane = bank % cfg.lanes
    address = (bank // cfg.lanes) * cfg.bank_size + columns % cfg.bank_size
    if columns.ndim == 0:
        return int(lane), int(address)
    return lane, address


def _padded_cols(cfg) -> int:
    return cfg.padded_banks_per_row * cfg.bank_size


def pack_x(cfg, x) -> np.ndarray:
    """The x frame as fields: ``(x_beats, lanes)``, or ``(batch, x_beats, lanes)`` for a batch.

    Beat ``t``, lane ``l`` is the word at address ``t`` of lane ``l``'s memory. `x` has at
    most ``cfg.cols`` entries per vector (fewer are padded with zeros, as are the padding
    banks up to a multiple of ``lanes``) and each must fit ``act_width`` signed bits.
    """
    x = as_integers(x, "x")
    if x.ndim not in (1, 2) or x.shape[-1] > cfg.cols:
        raise ValueError(
            f"x must have shape (n,) or (batch, n) with n <= cols = {cfg.cols}, not {x.shape}"
        )
    check_signed(x, cfg.act_width, "x", "act_width")
    padded = np.zeros(x.shape[:-1] + (_padded_cols(cfg),), dtype=x.dtype)
    padded[..., : x.shape[-1]] = x
    # Bank b = round * lanes + lane; its words fill addresses round*bank_size.. of `lane`.
    banks = padded.reshape(x.shape[:-1] + (cfg.rounds, cfg.lanes, cfg.bank_size))
    return banks.swapaxes(-1, -2).reshape(x.shape[:-1] + (cfg.x_beats, cfg.lanes))


def unpack_x(cfg, beats, cols: int | None = None) -> np.ndarray:
    """The vector(s) carried by x fields ``(x_beats, lanes)`` or ``(batch, x_beats, lanes)``.

    Inverse of :func:`pack_x`; the result keeps the first `cols` entries (default
    ``cfg.cols``), dropping the padding banks.
    """
    beats = as_integers(beats, "beats")
    cols = cfg.cols if cols is None else cols
    if not 0 <= cols <= cfg.cols:
        raise ValueError(f"cols must be from 0 to {cfg.cols}, not {cols}")
    if beats.ndim not in (2, 3) or beats.shape[-2:] != (cfg.x_beats, cfg.lanes):
        raise ValueError(
            f"x fields must have shape ({cfg.x_beats}, {cfg.lanes}) or "
            f"(batch, {cfg.x_beats}, {cfg.lanes}), not {beats.shape}"
        )
    lead = beats.shape[:-2]
    banks = beats.reshape(lead + (cfg.rounds, cfg.bank_size, cfg.lanes)).swapaxes(-1, -2)
    return banks.reshape(lead + (_padded_cols(cfg),))[..., :cols]


# -- w: compressed sparse banks (DESIGN §4) --------------------------------------------------


def _to_beats(cfg, per_bank: np.ndarray, groups: int) -> np.ndarray:
    """(rows_p, padded banks, nnz) slot array -> (beats, pes*lanes) in stream order."""
    slots = per_bank.reshape(groups, cfg.pes, cfg.rounds, cfg.lanes, cfg.nnz_per_bank)
    # Beat g*cycles_per_row + round*nnz + slot carries, at entry p*lanes + l, that slot of
    # bank round*lanes + l of row g*pes + p.
    ordered = slots.transpose(0, 2, 4, 1, 3)
    return ordered.reshape(groups * cfg.cycles_per_row, cfg.pes * cfg.lanes)


def _from_beats(cfg, beats: np.ndarray, groups: int) -> np.ndarray:
    """Inverse of :func:`_to_beats`."""
    slots = beats.reshape(groups, cfg.rounds, cfg.nnz_per_bank, cfg.pes, cfg.lanes)
    ordered = slots.transpose(0, 3, 1, 4, 2)
    return ordered.reshape(groups * cfg.pes, cfg.padded_banks_per_row, cfg.nnz_per_bank)


def pack_w(cfg, W) -> tuple[np.ndarray, np.ndarray]:
    """The w frame of matrix `W` as (values, indices), each ``(beats, pes*lanes)``.

    ``beats = row_groups(rows) * cycles_per_row``. `W` is ``(rows, cols_w)`` with
    ``cols_w <= cfg.cols``; it is padded with zero columns to the padded banks and with zero
    rows to a multiple of ``pes``. The nonzeros of a bank fill its slots in increasing
    column order; unused slots have value 0 and index 0. A bank with more than
    ``nnz_per_bank`` nonzeros raises :class:`PatternError` naming the first such row and bank;
    a weight outside ``weight_width`` raises ValueError.
    """
    W = as_integers(W, "W")
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] > cfg.cols:
        raise ValueError(
            f"W must be a matrix (rows, cols_w) with rows >= 1 and cols_w <= cols = "
            f"{cfg.cols}, not shape {W.shape}"
        )
    check_signed(W, cfg.weight_width, "W", "weight_width")
    rows, cols_w = W.shape
    groups = cfg.row_groups(rows)
    padded = np.zeros((groups * cfg.pes, _padded_cols(cfg)), dtype=W.dtype)
    padded[:rows, :cols_w] = W
    violation = check_bbs(padded[:rows, : cfg.cols], cfg.bank_size, cfg.nnz_per_bank)
    if violation is not None:
        raise PatternError(violation.message)
    banks = padded.reshape(groups * cfg.pes, cfg.padded_banks_per_row, cfg.bank_size)
    # A stable sort on "is zero" puts the nonzeros first, in increasing column order; at
    # most nnz_per_bank of them exist, so the first nnz_per_bank positions hold them all.
    order = np.argsort(banks == 0, axis=-1, kind="stable")[..., : cfg.nnz_per_bank]
    values = np.take_along_axis(banks, order, axis=-1)
    indices = np.where(values != 0, order, 0).astype(np.int64)
    return _to_beats(cfg, values, groups), _to_beats(cfg, indices, groups)


def unpack_w(cfg, values, indices, rows: int, cols: int | None = None) -> np.ndarray:
    """The matrix a w frame (values, indices) describes: ``(rows, cols)`` (default cols).

    Inverse of :func:`pack_w`. A zero-valued slot contributes nothing whatever its index;
    slots of one bank with the same index add up (the contract lets indices repeat), so an
    entry can exceed ``weight_width``. Padding rows and banks are dropped.
    """
    values = as_integers(values, "values")
    indices = as_integers(indices, "indices")
    cols = cfg.cols if cols is None else cols
    if not 0 <= cols <= cfg.cols:
        raise ValueError(f"cols must be from 0 to {cfg.cols}, not {cols}")
    groups = cfg.row_groups(rows)
    shape = (groups * cfg.cycles_per_row, cfg.pes * cfg.lanes)
    for name, array in (("values", values), ("indices", indices)):
        if array.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} for {rows} rows "
                f"({groups} row groups of {cfg.cycles_per_row} beats), not {array.shape}"
            )
    bad = (values != 0) & ((indices < 0) | (indices >= cfg.bank_size))
    if bad.any():
        beat, entry = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"indices[{beat}, {entry}] = {indices[beat, entry]} carries a nonzero weight but "
            f"is not a position in a bank of {cfg.bank_size}"
        )
    slot_values = _from_beats(cfg, values, groups)
    slot_indices = _from_beats(cfg, np.where(values != 0, indices, 0), groups)
    rows_p, banks_p, _ = slot_values.shape
    matrix = np.zeros((rows_p, banks_p, cfg.bank_size), dtype=values.dtype)
    row = np.arange(rows_p)[:, None, None]
    bank = np.arange(banks_p)[None, :, None]
    np.add.at(matrix, (row, bank, slot_indices), slot_values)
    return matrix.reshape(rows_p, banks_p * cfg.bank_size)[:rows, :cols]


# -- beats as integers (tdata) -------------------------------------------------------------


def pack_fields(fields, width: int) -> list[int]:
    """One ``tdata`` integer per beat: element ``i`` at bits ``[i*width, (i+1)*width)``.

    `fields` is ``(beats, count)`` (a 1-D array is one beat). Each element is taken as its
    two's complement masked to `width` bits, so signed and unsigned fields pack alike.
    """
    fields = as_integers(fields, "fields")
    if fields.ndim == 1:
        fields = fields[None, :]
    if fields.ndim != 2:
        raise ValueError(f"fields must be (beats, count), not shape {fields.shape}")
    beats, count = fields.shape
    mask = (1 << width) - 1
    if fields.dtype == object or width > INT64_BITS:
        return [sum((int(v) & mask) << (i * width) for i, v in enumerate(beat)) for beat in fields]
    # Vectorised: spread each field into its bits, then let packbits assemble the bytes.
    masked = fields.view(np.uint64) & np.uint64(mask)
    bits = (masked[:, :, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)
    packed = np.packbits(
        bits.astype(np.uint8).reshape(beats, count * width), axis=1, bitorder="little"
    )
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_fields(ints, count: int, width: int, signed: bool = True) -> np.ndarray:
    """The fields of ``tdata`` integers: ``(beats, count)``, sign-extended if `signed`.

    Inverse of :func:`pack_fields`. A beat with bits at or above ``count*width`` (or a
    negative one) raises ValueError. int64, or an object array where the values need more.
    """
    ints = [int(v) for v in ints]
    total = count * width
    for beat, value in enumerate(ints):
        if value < 0 or value >> total:
            raise ValueError(f"beat {beat} = {value:#x} does not fit {count} x {width} bits")
    if width > INT64_BITS or (width == INT64_BITS and not signed):
        mask = (1 << width) - 1
        half = 1 << (width - 1)
        result = np.empty((len(ints), count), dtype=object)
        for beat, value in enumerate(ints):
            for i in range(count):
                field = (value >> (i * width)) & mask
                result[beat, i] = field - (field >= half) * (1 << width) if signed else field
        return result
    nbytes = max(1, -(-total // 8))
    raw = np.frombuffer(b"".join(v.to_bytes(nbytes, "little") for v in ints), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(len(ints), nbytes), axis=1, bitorder="little")
    bits = bits[:, :total].reshape(len(ints), count, width).astype(np.uint64)
    # Distinct bits never carry, so the uint64 sum is exact for width <= 64.
    unsigned = (bits << np.arange(width, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)
    if not signed:
        return unsigned.astype(np.int64)
    return wrap(unsigned.view(np.int64), width)


def x_beat_ints(cfg, beats) -> list[int]:
    """``tdata`` of the x beats: fields ``(x_beats, lanes)`` (a batch gives frames in turn)."""
    beats = as_integers(beats, "beats")
    if beats.ndim < 2 or beats.shape[-1] != cfg.lanes:
        raise ValueError(f"x fields must be (..., {cfg.lanes}) lanes wide, not {beats.shape}")
    check_signed(beats, cfg.act_width, "x beats", "act_width")
    return pack_fields(beats.reshape(-1, cfg.lanes), cfg.act_width)


def x_fields_from_ints(cfg, ints) -> np.ndarray:
    """The x fields ``(beats, lanes)`` of ``tdata`` integers; inverse of :func:`x_beat_ints`."""
    return unpack_fields(ints, cfg.lanes, cfg.act_width, signed=True)


def w_beat_ints(cfg, values, indices) -> list[int]:
    """``tdata`` of the w beats: entry = value (low ``weight_width`` bits) | index above it.

    `values` and `indices` are the ``(beats, pes*lanes)`` fields of :func:`pack_w`; each entry
    is ``w_entry_width`` bits wide.
    """
    values = as_integers(values, "values")
    indices = as_integers(indices, "indices")
    entries = cfg.pes * cfg.lanes
    if values.ndim != 2 or values.shape[1] != entries or indices.shape != values.shape:
        raise ValueError(
            f"values and indices must both be (beats, {entries}), "
            f"not {values.shape} and {indices.shape}"
        )
    check_signed(values, cfg.weight_width, "values", "weight_width")
    bad = (indices < 0) | (indices >= (1 << cfg.index_width))
    if bad.any():
        beat, entry = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"indices[{beat}, {entry}] = {indices[beat, entry]} does not fit "
            f"index_width = {cfg.index_width} (unsigned)"
        )
    if cfg.w_entry_width >= INT64_BITS:
        values, indices = values.astype(object), indices.astype(object)
    combined = (values & ((1 << cfg.weight_width) - 1)) | (indices << cfg.weight_width)
    return pack_fields(combined, cfg.w_entry_width)


def w_fields_from_ints(cfg, ints) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of w ``tdata`` integers; inverse of :func:`w_beat_ints`."""
    entries = unpack_fields(ints, cfg.pes * cfg.lanes, cfg.w_entry_width, signed=False)
    values = wrap(entries & ((1 << cfg.weight_width) - 1), cfg.weight_width)
    indices = (entries >> cfg.weight_width).astype(np.int64)
    return values, indices


# -- y: one beat per row group -------------------------------------------------------------


def pack_y(cfg, y) -> list[int]:
    """``tdata`` of the y beats for results `y`: ``(rows,)``, or ``(batch, rows)`` in turn.

    Element ``p`` of beat ``g`` is row ``g*pes + p``; the padding rows of the last group are
    zero.
    """
    y = as_integers(y, "y")
    if y.ndim not in (1, 2) or y.shape[-1] < 1:
        raise ValueError(f"y must be (rows,) or (batch, rows), not shape {y.shape}")
    check_signed(y, cfg.out_width, "y", "out_width")
    rows = y.shape[-1]
    batch = np.atleast_2d(y)
    padded = np.zeros((batch.shape[0], cfg.row_groups(rows) * cfg.pes), dtype=y.dtype)
    padded[:, :rows] = batch
    return pack_fields(padded.reshape(-1, cfg.pes), cfg.out_width)


def unpack_y(cfg, ints, rows: int, batch: int | None = None) -> np.ndarray:
    """The results carried by y beats: ``(rows,)``, or ``(batch, rows)`` if `batch` is given.

    Expects exactly ``row_groups(rows)`` beats per result vector; padding rows are dropped.
    """
    ints = list(ints)
    groups = cfg.row_groups(rows)
    frames = 1 if batch is None else batch
    if len(ints) != frames * groups:
        raise ValueError(
            f"expected {frames * groups} y beats ({frames} x {groups} row groups of "
            f"{cfg.pes}) for {rows} rows, not {len(ints)}"
        )
    fields = unpack_fields(ints, cfg.pes, cfg.out_width, signed=True)
    y = fields.reshape(frames, groups * cfg.pes)[:, :rows]
    return y[0] if batch is None else y
