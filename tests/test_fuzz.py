"""Fuzzing the two ways in for a user's data (DESIGN §2.2, §8.1): configurations and .npy
files.

- A configuration, from keyword arguments, ``--set`` text or a file's bytes, either builds
  (and then respects every bound of DESIGN §2.2) or raises ConfigError naming a parameter,
  within a bounded time; nothing else escapes.
- A malformed .npy file (random bytes after the magic, random headers, truncated files,
  huge declared shapes, objects, wrong dimensions) makes ``bbsparse prune`` and ``bbsparse
  spmv`` exit 2 with one ``bbsparse: error:`` line and write nothing.

Deterministic (``derandomize``: the same examples every run, no example database) and
bounded (``max_examples``, ``deadline``), so the suite stays fast and a failure replays.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import bbsparse.tb.harness  # noqa: F401 - imported once here, not inside a timed example
from bbsparse.cli import main
from bbsparse.golden.config import (
    LIMITS,
    PARAMETERS,
    Config,
    ConfigError,
    load_config,
    parse_config,
)
from bbsparse.golden.prune import prune_bbs

FUZZ = settings(derandomize=True, database=None, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)

# -- configurations --------------------------------------------------------------------------

MISSING = object()

#: Any value at all: around the bounds, huge, of the wrong type.
ANY_VALUE = st.one_of(
    st.integers(-3, 300),
    st.integers(-(2**80), 2**80),
    st.sampled_from([2**64, -(2**64), 10**5000, -(10**5000), 4096, 4097, 2**20, 2**20 + 1,
                     2**28, 256, 257, 64, 65, 16, 17]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

#: Values each parameter takes in real configurations, so that many examples build.
VALID = {
    "lanes": st.one_of(st.integers(1, 16), st.sampled_from([64, 4096])),
    "pes": st.one_of(st.integers(1, 4), st.sampled_from([64, 4096])),
    "bank_size": st.sampled_from([1, 2, 3, 4, 6, 8, 16, 1024]),
    "nnz_per_bank": st.integers(1, 8),
    "cols": st.sampled_from([8, 16, 48, 64, 1024, 4096, 2**20]),
    "weight_width": st.integers(1, 64),
    "act_width": st.integers(1, 64),
    "acc_width": st.one_of(st.none(), st.integers(2, 256)),
    "out_width": st.one_of(st.none(), st.integers(1, 256)),
    "out_shift": st.integers(0, 40),
    "relu": st.booleans(),
    "tree_levels_per_stage": st.integers(1, 16),
    "pattern": st.sampled_from(["bbs", "unstructured", "cbs"]),
    "lut_multipliers": st.one_of(st.just(0), st.integers(0, 16)),
    "lutram_banks": st.one_of(st.just(0), st.integers(0, 16)),
    "product_registers": st.one_of(st.just(0), st.integers(0, 5)),
    "mixed_product_registers": st.one_of(st.just(0), st.integers(0, 5)),
    "operand_registers": st.one_of(st.just(0), st.integers(0, 5)),
    "broadcast_registers": st.one_of(st.just(0), st.integers(0, 5)),
    "result_registers": st.one_of(st.just(0), st.integers(0, 5)),
}
assert set(VALID) == set(PARAMETERS)



def _given(values: dict) -> dict:
    return {name: value for name, value in values.items() if value is not MISSING}


#: Real-looking configurations (many build, some break a rule between parameters) ...
VALID_KWARGS = st.fixed_dictionaries(
    {name: st.one_of(st.just(MISSING), VALID[name]) for name in PARAMETERS}).map(_given)
#: ... the same with one parameter given any value at all ...
ONE_BAD_KWARGS = st.tuples(VALID_KWARGS, st.sampled_from(PARAMETERS), ANY_VALUE).map(
    lambda t: {**t[0], t[1]: t[2]})
#: ... and anything for every parameter.
ANY_KWARGS = st.fixed_dictionaries(
    {name: st.one_of(st.just(MISSING), ANY_VALUE) for name in PARAMETERS}).map(_given)
CONFIG_KWARGS = st.one_of(VALID_KWARGS, ONE_BAD_KWARGS, ANY_KWARGS)


def check_outcome(build):
    """`build()` returns a Config within every bound, or raises a one-line ConfigError that
    starts with a parameter's name (``<name> <rule>, not <value>``), names the --set item or
    file it came from, or names an unknown parameter."""
    try:
        config = build()
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000, message
        first = message.split()[0]
        assert (first in PARAMETERS or first == "--set" or first.endswith(":")
                or message.startswith("unknown parameter ")), message
        event(f"refused: {first}")
        return None
    event("builds")
    assert config.multipliers <= LIMITS["multipliers"]
    assert config.cols <= LIMITS["cols"]
    assert max(config.weight_width, config.act_width) <= LIMITS["operand_width"]
    assert config.out_width <= config.acc_width <= LIMITS["acc_width"]
    assert config.tree_levels_per_stage <= LIMITS["tree_levels_per_stage"]
    assert config.vector_memory_bits <= LIMITS["vector_memory_bits"]
    # Whatever builds can be written out and read back as it was.
    assert parse_config(config.to_toml(), "round trip") == config
    return config


@fuzz(100)
@given(CONFIG_KWARGS)
def test_config_builds_or_names_the_field(kwargs):
    check_outcome(lambda: Config(**kwargs))


SET_TEXT = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["1" + "0" * 5000, "[" * 3000, "4\nbank_size=4", "inf", "nan", "true",
                     '"bbs"', "{a = 1}", "[1, 2]", "0x10", "1_000", "4 # comment"]),
)


@fuzz(100)
@given(st.lists(st.tuples(st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=6)),
                          SET_TEXT), max_size=4))
def test_set_text_builds_or_names_the_field(items):
    check_outcome(lambda: load_config(None, [f"{name}={text}" for name, text in items]))


CONFIG_FILE = st.one_of(
    st.binary(max_size=200),
    st.lists(st.tuples(st.sampled_from(PARAMETERS), SET_TEXT), max_size=5).map(
        lambda pairs: "\n".join(f"{k} = {v}" for k, v in pairs).encode("utf-8", "replace")),
)


@fuzz(100)
@given(CONFIG_FILE)
def test_config_file_bytes_build_or_are_refused(data):
    check_outcome(lambda: parse_config(data, "c.toml"))


# -- .npy files ------------------------------------------------------------------------------


def npy_bytes(header_text: str, data: bytes, version: int = 1) -> bytes:
    header = header_text.encode("utf-8")
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


def saved(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


DESCRS = st.sampled_from(["<i4", "<i8", "|i1", ">u2", "|O", "<f8", "|b1", "<U3", "|V8",
                          "<M8[s]", "garbage", [("a", "<i4")], ("<i4", (2,)), 5])
SHAPES = st.one_of(
    st.lists(st.integers(0, 6), max_size=4).map(tuple),
    st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=3).map(tuple),
    st.lists(st.just(10**6), min_size=2, max_size=40).map(tuple),
    st.sampled_from([(10**6, 10**6), (2**62, 2), "(3, 4)", None, [2, 2]]),
)
HEADERS = st.builds(
    lambda descr, fortran, shape, extra: repr(
        {"descr": descr, "fortran_order": fortran, "shape": shape, **extra}),
    DESCRS, st.one_of(st.booleans(), st.integers(0, 2)), SHAPES,
    st.one_of(st.just({}), st.just({"x": 1})),
)

BAD_NPY = st.one_of(
    # Random bytes after the magic.
    st.binary(max_size=300).map(lambda tail: b"\x93NUMPY" + tail),
    # Random header text of a plausible length.
    st.tuples(st.text(max_size=80), st.binary(max_size=64)).map(
        lambda t: npy_bytes(t[0] + "\n", t[1])),
    # Well-formed dict headers with every kind of dtype and shape, and some data.
    st.tuples(HEADERS, st.binary(max_size=128), st.sampled_from([1, 2])).map(
        lambda t: npy_bytes(t[0] + "\n", t[1], t[2])),
    # Truncated real files.
    st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(0, 10**6)).map(
        lambda t: saved(np.ones((t[0], 4 * t[1]), np.int16))[
            : t[2] % len(saved(np.ones((t[0], 4 * t[1]), np.int16)))]),
    # Real files of the wrong kind: objects, floats, 0-D, 3-D, empty, booleans.
    st.sampled_from([
        saved(np.array([[1, None]], dtype=object), allow_pickle=True),
        saved(np.zeros((2, 4))),
        saved(np.array(3, np.int32)),
        saved(np.zeros((2, 2, 4), np.int8)),
        saved(np.zeros((0, 4), np.int8)),
        saved(np.ones((2, 4), bool)),
    ]),
)


def valid_matrix(data: bytes, ndims=(2,)) -> bool:
    """Whether numpy itself reads `data` as a non-empty integer array of `ndims` dimensions
    with a multiple of 4 columns (what the commands below accept)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001 - numpy's failures on bad files are of any kind
        return False
    return (isinstance(array, np.ndarray) and array.ndim in ndims and array.size > 0
            and array.dtype.kind in "iu" and array.shape[-1] % 4 == 0)


def run_quietly(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def assert_refused_and_nothing_written(status, stdout, stderr, out_dir: Path):
    assert status == 2, stderr
    assert stdout == ""
    assert stderr.startswith("bbsparse: error: ") and stderr.count("\n") == 1, stderr
    assert list(out_dir.iterdir()) == []


@fuzz(100)
@given(BAD_NPY)
def test_prune_refuses_a_malformed_npy(data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "W.npy").write_bytes(data)
        (tmp / "out").mkdir()
        status, stdout, stderr = run_quietly(
            ["prune", "--weights", tmp / "W.npy", "--bank-size", 4, "--nnz-per-bank", 1,
             "--out", tmp / "out" / "P.npy"])
        event("valid" if valid_matrix(data) else "malformed")
        if valid_matrix(data):  # the strategies can, rarely, make a good file
            assert status == 0, stderr
            matrix = np.load(tmp / "W.npy")
            assert np.array_equal(np.load(tmp / "out" / "P.npy"), prune_bbs(matrix, 4, 1))
            return
        assert_refused_and_nothing_written(status, stdout, stderr, tmp / "out")


SMALL = ["--set", "lanes=4", "--set", "pes=2", "--set", "bank_size=4", "--set", "cols=32"]


@fuzz(60)
@given(BAD_NPY, st.sampled_from(["weights", "x"]))
def test_spmv_refuses_a_malformed_npy(data, which):
    assume(not valid_matrix(data, (1, 2)))  # a good file would start a simulation
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        good = {"weights": np.zeros((4, 32), np.int8), "x": np.zeros(32, np.int8)}
        for name, array in good.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / f"{which}.npy").write_bytes(data)
        (tmp / "out").mkdir()
        status, stdout, stderr = run_quietly(
            ["spmv", *SMALL, "--weights", tmp / "weights.npy", "--x", tmp / "x.npy",
             "--out", tmp / "out" / "Y.npy"])
        assert_refused_and_nothing_written(status, stdout, stderr, tmp / "out")
