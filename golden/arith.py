"""Fixed-point rules of DESIGN §5: wrapping, the output stage and saturation.

All values are signed two's-complement integers. Arrays are int64 whenever the values fit
(every width up to 64 bits); a configuration may ask for wider accumulators or operands,
and then the arithmetic falls back to NumPy object arrays of Python integers, which never
overflow. The helpers :func:`as_integers` and :func:`check_signed` are shared by the other
golden models to accept and validate integer data the same way everywhere.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "clog2",
    "as_integers",
    "check_signed",
    "output_stage",
    "saturate",
    "scale_exponent",
    "signed_range",
    "wrap",
]

# int64 holds every signed value of at most this many bits.
INT64_BITS = 64


def clog2(n: int) -> int:
    """ceil(log2(n)) for n >= 1."""
    return (n - 1).bit_length()


def signed_range(width: int) -> tuple[int, int]:
    """The inclusive range (lo, hi) of a signed two's-complement number of `width` bits."""
    _check_width(width)
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def _check_width(width) -> None:
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width must be an integer of at least 1 bit, not {width!r}")


def _is_scalar(values) -> bool:
    return isinstance(values, numbers.Integral) and not isinstance(values, bool)


def as_integers(values, name: str = "values") -> np.ndarray:
    """`values` as an integer array: int64 when every value fits, else an object array.

    Accepts any NumPy integer dtype, Python integers (also in lists) and object arrays of
    integers. Floats, booleans and anything else raise ValueError naming `name`: a
    fractional weight would otherwise be truncated without a word.
    """
    array = np.asarray(values)
    if array.dtype == object:
        for position, item in np.ndenumerate(array):
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise ValueError(
                    f"{name} must hold integers, not {type(item).__name__} "
                    f"(at {_position(position)})"
                )
        # Python ints (not NumPy scalars) so that later arithmetic never overflows.
        ints = np.empty(array.size, dtype=object)
        for k, item in enumerate(array.flat):
            ints[k] = int(item)
        ints = ints.reshape(array.shape)
        lo, hi = signed_range(INT64_BITS)
        if all(lo <= item <= hi for item in ints.flat):
            return ints.astype(np.int64)
        return ints
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, not {array.dtype}")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        return array.astype(object)
    return array.astype(np.int64)


def _position(position: tuple) -> str:
    return ", ".join(str(int(i)) for i in position)


def check_signed(values: np.ndarray, width: int, name: str, param: str) -> None:
    """Raise ValueError unless every entry of `values` fits a signed `width`-bit number.

    The message names the array, the first offending position (row-major), the value, the
    parameter that sets the width and the allowed range, e.g.
    ``W[3, 5] = 200 does not fit weight_width = 8 (signed range [-128, 127])``.
    """
    lo, hi = signed_range(width)
    values = np.asarray(values)
    if values.size == 0:
        return
    bad = (values < lo) | (values > hi)
    if bad.any():
        position = tuple(np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{_position(position)}] = {values[position]} does not fit "
            f"{param} = {width} (signed range [{lo}, {hi}])"
        )


def wrap(values, width: int):
    """`values` wrapped to signed `width` bits (two's complement), i.e. modulo 2**width.

    Returns a Python int for a scalar, otherwise an int64 array; an object array only when
    `width` exceeds 64 bits and the input already held such wide values.
    """
    _check_width(width)
    if _is_scalar(values):
        half = 1 << (width - 1)
        return ((int(values) + half) % (1 << width)) - half
    array = as_integers(values)
    if array.dtype == object:
        half = 1 << (width - 1)
        wrapped = ((array + half) % (1 << width)) - half
        return wrapped.astype(np.int64) if width <= INT64_BITS else wrapped
    if width >= INT64_BITS:
        return array
    # Masking keeps the low `width` bits without any intermediate that could overflow
    # int64 (adding the half first would, for values near the int64 limits).
    # 2**width itself may not fit int64 (width 63), so subtract it as two halves.
    half = 1 << (width - 1)
    low = array & ((1 << width) - 1)
    return np.where(low >= half, low - half - half, low)


def saturate(values, width: int):
    """`values` clamped to the signed `width`-bit range (a Python int for a scalar input)."""
    lo, hi = signed_range(width)
    if _is_scalar(values):
        return min(max(int(values), lo), hi)
    array = as_integers(values)
    if array.dtype != object and width >= INT64_BITS:
        return array
    clamped = np.minimum(np.maximum(array, lo), hi)
    return clamped.astype(np.int64) if width <= INT64_BITS else clamped


def output_stage(acc, cfg):
    """The output stage of DESIGN §5 applied to accumulator values `acc`.

    `acc` must already be wrapped to ``cfg.acc_width`` bits (ValueError otherwise). Shift
    right by ``cfg.out_shift`` rounding half up, ReLU if ``cfg.relu``, saturate to
    ``cfg.out_width`` bits. Vectorised; returns a Python int for a scalar input and int64
    arrays otherwise (object arrays only when ``out_width`` exceeds 64 bits).
    """
    scalar = _is_scalar(acc)
    array = as_integers(acc, "acc")
    check_signed(array, cfg.acc_width, "acc", "acc_width")
    # The rounding add needs acc_width + 1 bits. |a| < 2**(acc_width-1) and the half is at
    # most 2**(acc_width-2) (out_shift < acc_width), so the sum stays below 2**acc_width:
    # int64 is exact up to acc_width = 63; wider accumulators use Python integers.
    if cfg.acc_width > INT64_BITS - 1:
        array = array.astype(object)
    if cfg.out_shift > 0:
        array = (array + (1 << (cfg.out_shift - 1))) >> cfg.out_shift
    if cfg.relu:
        array = np.maximum(array, 0)
    result = saturate(array, cfg.out_width)
    if scalar:
        return int(result)
    return result


def scale_exponent(largest: float, limit: int) -> int:
    """The smallest e with ``largest <= limit * 2**e``: the finest power-of-two scale that
    holds `largest` in ``[-limit, limit]`` without saturating (0 for nothing to hold)."""
    if not largest > 0:
        return 0
    e = math.ceil(math.log2(largest / limit))
    while largest > limit * 2.0**e:  # guard against log2 rounding
        e += 1
    while largest <= limit * 2.0 ** (e - 1):
        e -= 1
    return e
