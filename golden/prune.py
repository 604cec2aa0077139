"""Magnitude pruning: bank-balanced (DESIGN §1) and the patterns it is compared with.

Every function takes a 2-D matrix of integers or floats and returns a pruned copy of the
same shape and dtype; ties in magnitude always go to the lower index, so the result is
deterministic. Magnitudes of signed integers are taken as uint64, so |-128| of an int8 (or
|-2**63| of an int64) does not overflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "OPTIONS",
    "PATTERNS",
    "PRUNERS",
    "PruneOptionError",
    "Pruner",
    "PatternViolation",
    "bbs_mask",
    "check_bbs",
    "prune",
    "prune_bbs",
    "prune_block",
    "prune_cbs",
    "prune_nm",
    "prune_unstructured",
]

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


def prune_cbs(W, bank_size: int, nnz_per_bank: int) -> np.ndarray:
    """Column-bank-balanced pruning (DESIGN §9.4): BBS on the columns, ``bbs(W.T).T``.

    Every column is cut into banks of `bank_size` consecutive rows and each bank keeps its
    `nnz_per_bank` largest |w|; ties go to the lower row. A last bank cut short by the rows
    is pruned as if padded with zero rows, as :func:`bbsparse.golden.cbs.check_cbs` checks
    it (a padding zero is never kept before a real weight: it ranks below every |w| > 0 and
    after every real zero). Returns a pruned copy with W's dtype.
    """
    W = _matrix(W)
    rows = W.shape[0]
    _check_bank(bank_size, bank_size, nnz_per_bank)
    padded = np.zeros((-(-rows // bank_size) * bank_size, W.shape[1]), dtype=W.dtype)
    padded[:rows] = W
    return prune_bbs(padded.T, bank_size, nnz_per_bank).T[:rows].copy()


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


# -- the pruner registry -------------------------------------------------------------------


class PruneOptionError(ValueError):
    """Options that do not describe a pruning of this matrix; names the option (as the
    ``bbsparse prune`` flag) and the rule."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bbs_budget(options: dict, shape: tuple[int, int], pattern: str, what: str,
                source: str) -> tuple[int, int, int]:
    """(bank_size, nnz_per_bank, nonzeros BBS keeps) from the bank options."""
    bank_size, nnz = options.get("bank_size"), options.get("nnz_per_bank")
    if bank_size is None or nnz is None:
        raise PruneOptionError(f"--pattern {pattern} needs {what}")
    rows, cols = shape
    if nnz > bank_size:
        raise PruneOptionError(
            f"--nnz-per-bank ({nnz}) must not exceed --bank-size ({bank_size})")
    if cols % bank_size:
        raise PruneOptionError(
            f"{source} has {cols} columns, not a multiple of --bank-size ({bank_size})")
    return bank_size, nnz, rows * (cols // bank_size) * nnz


def _resolve_bbs(options, shape, source):
    bank_size, nnz, _ = _bbs_budget(options, shape, "bbs", "--bank-size and --nnz-per-bank",
                                    source)
    return {"bank_size": bank_size, "nnz_per_bank": nnz}, f"bbs {nnz}/{bank_size}"


def _resolve_cbs(options, shape, source):
    bank_size, nnz = options.get("bank_size"), options.get("nnz_per_bank")
    if bank_size is None or nnz is None:
        raise PruneOptionError("--pattern cbs needs --bank-size and --nnz-per-bank")
    if nnz > bank_size:
        raise PruneOptionError(
            f"--nnz-per-bank ({nnz}) must not exceed --bank-size ({bank_size})")
    return {"bank_size": bank_size, "nnz_per_bank": nnz}, f"cbs {nnz}/{bank_size} (column banks)"


def _resolve_nm(options, shape, source):
    n, m = options.get("n"), options.get("m")
    if (n is None) != (m is None):
        raise PruneOptionError("--pattern nm needs both --n and --m")
    if n is None:
        n, m = options.get("nnz_per_bank"), options.get("bank_size")
        if n is None or m is None:
            raise PruneOptionError(
                "--pattern nm needs --n and --m (or --nnz-per-bank and --bank-size)")
    if n > m:
        raise PruneOptionError(f"--n ({n}) must not exceed --m ({m})")
    if shape[1] % m:
        raise PruneOptionError(f"{source} has {shape[1]} columns, not a multiple of M ({m})")
    return {"n": n, "m": m}, f"nm {n}:{m}"


def _resolve_unstructured(options, shape, source):
    nnz = options.get("nnz")
    if nnz is None:
        _, _, nnz = _bbs_budget(options, shape, "unstructured",
                                "--nnz (or --bank-size and --nnz-per-bank)", source)
    rows, cols = shape
    if nnz > rows * cols:
        raise PruneOptionError(f"--nnz ({nnz}) exceeds the {rows * cols} weights of {source}")
    return {"nnz": nnz}, f"unstructured, {nnz} kept"


def _resolve_block(options, shape, source):
    block = options.get("block")
    if block is None:
        raise PruneOptionError("--pattern block needs --block")
    grid_rows, grid_cols = block_grid(shape, block)
    rows, cols = shape
    # prune_block pads the matrix to whole tiles; a block far larger than the matrix would
    # pad it to an array no memory holds. A block of at most the shorter side pads it to
    # less than 4 times its size.
    if grid_rows * block * grid_cols * block > 4 * rows * cols:
        raise PruneOptionError(
            f"--block ({block}) is too large for the {rows}x{cols} matrix of {source}: whole "
            f"{block}x{block} tiles would cover {grid_rows * block}x{grid_cols * block} "
            f"weights, more than 4 times the matrix; use a block of at most {min(rows, cols)}")
    tiles = grid_rows * grid_cols
    keep = options.get("blocks")
    if keep is None:
        _, _, nonzeros = _bbs_budget(options, shape, "block",
                                     "--blocks (or --bank-size and --nnz-per-bank)", source)
        # The nearest whole number of blocks, halves rounded up.
        keep = min(tiles, (2 * nonzeros + block * block) // (2 * block * block))
    if keep > tiles:
        raise PruneOptionError(f"--blocks ({keep}) exceeds the {tiles} blocks of {block}x{block}")
    return {"block": block, "keep": keep}, f"block {block}x{block}, {keep} of {tiles} kept"


@dataclass(frozen=True)
class Pruner:
    """One pruning pattern: its function, the keyword arguments the function takes, the
    options of ``bbsparse prune`` that only it takes, and how those options (with the
    shared bank options) become the function's arguments."""

    name: str
    function: Callable[..., np.ndarray]
    params: tuple[str, ...]
    #: Options of ``bbsparse prune`` that belong to this pattern alone.
    own_options: tuple[str, ...]
    #: Help text: the options and what the pattern keeps.
    usage: str
    resolver: Callable[[dict, tuple[int, int], str], tuple[dict, str]]

    def __call__(self, W, **params) -> np.ndarray:
        if set(params) != set(self.params):
            given = ", ".join(sorted(params)) or "nothing"
            raise ValueError(f"pattern {self.name!r} takes {', '.join(self.params)}, not {given}")
        return self.function(W, **params)

    def resolve(self, options: dict, shape: tuple[int, int],
                source: str = "the matrix") -> tuple[dict, str]:
        """The function's keyword arguments and a one-line description, from the options of
        ``bbsparse prune`` (``bank_size``, ``nnz_per_bank`` and this pattern's own; None =
        not given) for a matrix of `shape` named `source`. PruneOptionError otherwise."""
        for option in OPTIONS:
            owner = next((p.name for p in PRUNERS.values() if option in p.own_options), None)
            if options.get(option) is not None and owner not in (None, self.name):
                raise PruneOptionError(
                    f"{_option(option)} applies to --pattern {owner}, not {self.name}")
        return self.resolver(options, shape, source)


#: Every pruning pattern, by name (``bbsparse prune --pattern``, the demo, the bench).
PRUNERS: dict[str, Pruner] = {p.name: p for p in (
    Pruner("bbs", prune_bbs, ("bank_size", "nnz_per_bank"), (),
           "--bank-size K --nnz-per-bank N: the N largest |w| of every bank of K columns",
           _resolve_bbs),
    Pruner("nm", prune_nm, ("n", "m"), ("n", "m"),
           "--n N --m M: N of every M consecutive weights of a row (BBS with bank M);\n"
           "without --n/--m, N:M is --nnz-per-bank:--bank-size", _resolve_nm),
    Pruner("unstructured", prune_unstructured, ("nnz",), ("nnz",),
           "--nnz TOTAL: the TOTAL largest |w| of the matrix; without --nnz, as many as\n"
           "BBS with --bank-size/--nnz-per-bank keeps (rows * cols * N / K)",
           _resolve_unstructured),
    Pruner("block", prune_block, ("block", "keep"), ("block", "blocks"),
           "--block B [--blocks COUNT]: the COUNT B x B blocks of largest L1 norm; without\n"
           "--blocks, the count nearest to the nonzeros BBS with --bank-size/--nnz-per-bank\n"
           "keeps (rows * cols * N / K / B**2)", _resolve_block),
    Pruner("cbs", prune_cbs, ("bank_size", "nnz_per_bank"), (),
           "--bank-size K --nnz-per-bank N: the N largest |w| of every bank of K rows of a\n"
           "column (BBS on the columns, for the column engine; a last bank cut short by the\n"
           "rows counts as padded with zero rows)",
           _resolve_cbs),
)}

#: Every option a pruner may take, shared or its own.
OPTIONS = ("bank_size", "nnz_per_bank") + tuple(
    option for p in PRUNERS.values() for option in p.own_options)

PATTERNS = tuple(PRUNERS)


def prune(W, pattern: str, **params) -> np.ndarray:
    """Prune `W` with the named pattern; `params` are the keyword arguments of that pattern.

    ``bbs``: bank_size, nnz_per_bank; ``nm``: n, m; ``unstructured``: nnz; ``block``: block,
    keep.
    """
    if pattern not in PRUNERS:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PRUNERS)}")
    return PRUNERS[pattern](W, **params)


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
