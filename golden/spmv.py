"""The golden sparse matrix-vector product: what `bbs_spmv` must compute, bit for bit.

``y = output_stage(wrap(W @ x, acc_width))`` (DESIGN §5). The model does not care where the
nonzeros are: the pattern is the packer's business (:func:`bbsparse.golden.csb.pack_w`
refuses a matrix the core cannot hold), so the same function also gives the reference
result for dense or unstructured matrices.
"""

from __future__ import annotations

import numpy as np

from .arith import INT64_BITS, as_integers, check_signed, output_stage, wrap

__all__ = ["accumulate", "spmv"]


def _check_operands(cfg, W, x) -> tuple[np.ndarray, np.ndarray]:
    W = as_integers(W, "W")
    x = as_integers(x, "x")
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D matrix (rows, cols), not shape {W.shape}")
    rows, cols_w = W.shape
    if rows < 1:
        raise ValueError("W must have at least one row")
    if cols_w > cfg.cols:
        raise ValueError(
            f"W has {cols_w} columns, more than cols = {cfg.cols} the core is generated for"
        )
    if x.ndim not in (1, 2) or x.shape[-1] != cols_w or (x.ndim == 2 and x.shape[0] < 1):
        raise ValueError(
            f"x must have shape ({cols_w},) or (batch, {cols_w}) to match W, not {x.shape}"
        )
    check_signed(W, cfg.weight_width, "W", "weight_width")
    check_signed(x, cfg.act_width, "x", "act_width")
    return W, x


def accumulate(cfg, W, x) -> np.ndarray:
    """The accumulator of every row: ``W @ x`` with exact products, wrapped to acc_width.

    Same arguments and shapes as :func:`spmv`; returns the values before the output stage.
    """
    W, x = _check_operands(cfg, W, x)
    batch = np.atleast_2d(x)
    if cfg.acc_width <= INT64_BITS:
        # Arithmetic modulo 2**64 (unsigned, so the wrap-around is well defined) is exact
        # modulo 2**acc_width for acc_width <= 64, which is all the wrap below keeps.
        # Both operands fit int64 here: weight_width + act_width <= acc_width <= 64.
        acc = (batch.view(np.uint64) @ W.T.view(np.uint64)).view(np.int64)
    else:
        acc = batch.astype(object) @ W.T.astype(object)
    acc = wrap(acc, cfg.acc_width)
    return acc[0] if x.ndim == 1 else acc


def spmv(cfg, W, x) -> np.ndarray:
    """The result y the core returns for matrix `W` and activations `x` (DESIGN §5).

    `W` is ``(rows, cols_w)`` with ``cols_w <= cfg.cols`` (a shorter row is the same as one
    padded with zero weights); `x` is ``(cols_w,)`` or a batch ``(batch, cols_w)``. Entries
    must fit ``weight_width`` and ``act_width`` signed bits (ValueError naming the array and
    the first offending position otherwise). Returns ``(rows,)`` or ``(batch, rows)``,
    int64 (an object array of Python ints only when ``out_width`` exceeds 64 bits).
    """
    return output_stage(accumulate(cfg, W, x), cfg)
