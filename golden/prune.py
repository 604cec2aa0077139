"""Magnitude pruning: bank-balanced (DESIGN §1) and the patterns it is compared with.

Every function takes a 2-D matrix of integers or floats and returns a pruned copy of the
same shape and dtype; ties in magnitude always go to the lower index, so the result is
deterministic. Magnitudes of signed integers are taken as uint64, so |-128| of an int8 (or
|-2**63| of an int64) does not overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PATTERNS",
    "PatternViolation",
    "bbs_mask",
    "check_bbs",
    "prune",
    "prune_bbs",
    "prune_block",
    "prune_nm",
    "prune_unstructured",
]

PATTERNS = ("bbs", "unstructured", "block", "nm")


def _matrix(W, allow_object: bool = False) -> np.ndarray:
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"the weights must be a 2-D matrix (rows, cols), not shape {W.shape}")
    kind = W.dtype.kind
    if kind == "O" and allow_object:
        return W
    if kind not in "iuf":
        raise ValueError(f"the weights must be integers or floats, not {W.dtype}")
    if kind == "f" and np.isnan(W).any():
        position = tuple(int(i) for i in np.argwhere(np.isnan(W))[0])
        raise ValueError(f"the weights hold NaN at {position}; a NaN has no magnitude")
    return W


def _magnitude(W: np.ndarray) -> np.ndarray:
    """|W| exactly: uint64 for integers (no overflow), float64 for floats."""
    if W.dtype.kind == "u":
        return W.astype(np.uint64)
    if W.dtype.kind == "i":
        # abs(int64 min) wraps to itself, whose uint64 view is exactly 2**63.
        return np.abs(W.astype(np.int64)).view(np.uint64)
    return np.abs(W.astype(np.float64))


def _descending(magnitude: np.ndarray) -> np.ndarray:
    """A key whose stable ascending sort orders `magnitude` from largest to smallest."""
    if magnitude.dtype == np.uint64:
        return ~magnitude  # 2**64 - 1 - m: order-reversing and exact
    return -magnitude


def _check_bank(cols: int, bank_size: int, nnz_per_bank: int) -> None:
    for name, value in (("bank_size", bank_size), ("nnz_per_bank", nnz_per_bank)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if nnz_per_bank > bank_size:
        raise ValueError(
            f"nnz_per_bank must not exceed bank_size ({bank_size}), not {nnz_per_bank}"
        )
    if cols % bank_size:
        raise ValueError(f"cols must be a multiple of bank_size ({bank_size}), not {cols}")


def bbs_mask(W, bank_size: int, nnz_per_bank: int) -> np.ndarray:
    """The slots BBS pruning keeps: a boolean matrix with exactly `nnz_per_bank` True per bank.

    Inside each bank of `bank_size` consecutive columns of a row, the `nnz_per_bank` largest
    magnitudes are kept, ties going to the lower column. A kept weight may be zero.
    """
    W = _matrix(W)
    rows, cols = W.shape
    _check_bank(cols, bank_size, nnz_per_bank)
    key = _descending(_magnitude(W)).reshape(rows, cols // bank_size, bank_size)
    # A stable sort keeps equal magnitudes in column order, so ties go to the lower column.
    keep = np.argsort(key, axis=-1, kind="stable")[..., :nnz_per_bank]
    mask = np.zeros(key.shape, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=-1)
    return mask.reshape(rows, cols)


def prune_bbs(W, bank_size: int, nnz_per_bank: int) -> np.ndarray:
    """BBS pruning (DESIGN §1): keep the `nnz_per_bank` largest |w| in every bank of every row.

    Banks are `bank_size` consecutive columns (cols must be a multiple of bank_size); ties go
    to the lower column. Returns a pruned copy with W's dtype.
    """
    W = _matrix(W)
    return np.where(bbs_mask(W, bank_size, nnz_per_bank), W, 0).astype(W.dtype)


def prune_nm(W, n: int, m: int) -> np.ndarray:
    """N:M pruning: keep the `n` largest |w| of every `m` consecutive weights of a row.

    This is BBS with banks of `m` and `n` nonzeros per bank (2:4 is ``prune_nm(W, 2, 4)``).
    """
    return prune_bbs(W, bank_size=m, nnz_per_bank=n)


def prune_unstructured(W, nnz: int) -> np.ndarray:
    """Unstructured pruning: keep the `nnz` largest |w| of the whole matrix, exactly.

    A global magnitude threshold; ties go to the lower flat (row-major) index, so exactly
    `nnz` entries survive (some of them may be zero if W has fewer nonzeros).
    """
    W = _matrix(W)
    if isinstance(nnz, bool) or not isinstance(nnz, int | np.integer) or not 0 <= nnz <= W.size:
        raise ValueError(
            f"nnz must be an integer from 0 to {W.size} (the matrix size), not {nnz!r}"
        )
    key = _descending(_magnitude(W)).ravel()
    keep = np.argsort(key, kind="stable")[:nnz]
    mask = np.zeros(W.size, dtype=bool)
    mask[keep] = True
    return np.where(mask.reshape(W.shape), W, 0).astype(W.dtype)


def block_grid(shape: tuple[int, int], block: int) -> tuple[int, int]:
    """Number of (block rows, block columns) of a matrix cut into `block` x `block` tiles."""
    rows, cols = shape
    return -(-rows // block), -(-cols // block)


def prune_block(W, block: int, keep: int) -> np.ndarray:
    """Block pruning: keep the `keep` square `block` x `block` tiles of largest L1 norm.

    The matrix is cut into tiles from the top-left corner; where rows or cols is not a
    multiple of `block`, the tiles on the bottom and right edges are smaller and compete
    with the L1 norm of the weights they hold. Ties go to the lower tile index in row-major
    tile order. Every weight of a kept tile survives; all others become zero.
    """
    W = _matrix(W)
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"block must be a positive integer, not {block!r}")
    grid_rows, grid_cols = block_grid(W.shape, block)
    tiles = grid_rows * grid_cols
    if isinstance(keep, bool) or not isinstance(keep, int | np.integer) or not 0 <= keep <= tiles:
        raise ValueError(
            f"keep must be an integer from 0 to {tiles} (the number of {block}x{block} blocks), "
            f"not {keep!r}"
        )
    magnitude = _magnitude(W)
    if magnitude.dtype == np.uint64 and W.dtype.itemsize > 4:
        # A sum of block**2 values of up to 2**63 could overflow uint64: use Python ints.
        magnitude = magnitude.astype(object)
    rows, cols = W.shape
    padded = np.zeros((grid_rows * block, grid_cols * block), dtype=magnitude.dtype)
    padded[:rows, :cols] = magnitude
    norms = padded.reshape(grid_rows, block, grid_cols, block).sum(axis=(1, 3)).ravel()
    key = -norms if norms.dtype == object else _descending(norms)
    kept = np.zeros(tiles, dtype=bool)
    kept[np.argsort(key, kind="stable")[:keep]] = True
    mask = np.repeat(np.repeat(kept.reshape(grid_rows, grid_cols), block, 0), block, 1)
    return np.where(mask[:rows, :cols], W, 0).astype(W.dtype)


def prune(W, pattern: str, **params) -> np.ndarray:
    """Prune `W` with the named pattern; `params` are the keyword arguments of that pattern.

    ``bbs``: bank_size, nnz_per_bank; ``nm``: n, m; ``unstructured``: nnz; ``block``: block,
    keep.
    """
    functions = {
        "bbs": (prune_bbs, ("bank_size", "nnz_per_bank")),
        "nm": (prune_nm, ("n", "m")),
        "unstructured": (prune_unstructured, ("nnz",)),
        "block": (prune_block, ("block", "keep")),
    }
    if pattern not in functions:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    function, names = functions[pattern]
    if set(params) != set(names):
        given = ", ".join(sorted(params)) or "nothing"
        raise ValueError(f"pattern {pattern!r} takes {', '.join(names)}, not {given}")
    return function(W, **params)


@dataclass(frozen=True)
class PatternViolation:
    """A bank holding more nonzeros than the BBS pattern allows (the first one found)."""

    row: int
    bank: int
    nonzeros: int
    allowed: int
    bank_size: int

    @property
    def first_column(self) -> int:
        return self.bank * self.bank_size

    @property
    def last_column(self) -> int:
        return self.first_column + self.bank_size - 1

    @property
    def message(self) -> str:
        return (
            f"row {self.row}, bank {self.bank} (columns {self.first_column}..{self.last_column})"
            f" holds {self.nonzeros} nonzeros; the pattern allows {self.allowed}"
        )

    def __str__(self) -> str:
        return self.message


def check_bbs(W, bank_size: int, nnz_per_bank: int) -> PatternViolation | None:
    """None if `W` follows the BBS pattern, else the first violating bank (row-major).

    Following the pattern means at most `nnz_per_bank` nonzeros in every bank (a kept weight
    may be zero, so fewer is fine). A matrix whose cols is not a multiple of `bank_size`
    cannot be cut into banks at all: that raises ValueError, like invalid sizes do.
    """
    # Object arrays (Python ints wider than 64 bits) only need counting, not sorting.
    W = _matrix(W, allow_object=True)
    rows, cols = W.shape
    _check_bank(cols, bank_size, nnz_per_bank)
    counts = np.count_nonzero(W.reshape(rows, cols // bank_size, bank_size), axis=-1)
    over = np.argwhere(counts > nnz_per_bank)
    if len(over) == 0:
        return None
    row, bank = (int(i) for i in over[0])
    return PatternViolation(row, bank, int(counts[row, bank]), nnz_per_bank, bank_size)
