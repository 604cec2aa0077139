"""What every subcommand of ``bbsparse`` shares: the one-line error, bounded number types, the
configuration options, and the file helpers (checked loading, atomic writing).

The command modules (:mod:`bbsparse.cli`, :mod:`bbsparse.synth_commands`) import these; this
module imports none of them, so the command line has no import cycle.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "PROG", "CliError", "Parser", "add_config_options", "config_from", "count",
    "load_integers", "load_matrix", "number_type", "positive_int", "probability", "save_array",
]

PROG = "bbsparse"


class CliError(Exception):
    """A user error: printed as ``bbsparse: error: <message>``, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the tool."""

    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        raise CliError(message + hint)


def number_type(convert, accept, rule: str):
    """An argparse `type` that parses with `convert` and keeps only values `accept` takes;
    anything else is refused as "must be <rule>, not '<text>'"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value

    return parse


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
count = number_type(int, lambda v: v >= 0, "a non-negative integer")
probability = number_type(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")


# -- file helpers ----------------------------------------------------------------------------


def load_matrix(path: str) -> np.ndarray:
    """A 2-D integer matrix from a .npy file; CliError with one clear line otherwise."""
    return load_integers(path, (2,), "a 2-D matrix (rows, cols)")


def load_integers(path: str, ndims: tuple[int, ...], shape_text: str) -> np.ndarray:
    """A non-empty integer array of one of `ndims` dimensions from a .npy file."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            magic = stream.read(6)
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a .npy file") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        hint = " (a .npz archive; save one array with numpy.save)" if magic[:2] == b"PK" else ""
        raise CliError(f"{path} is not a .npy file{hint}")
    try:
        matrix = np.load(file, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise CliError(f"{path} holds Python objects; need an integer matrix") from None
        raise CliError(f"{path} is not a readable .npy file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise CliError(f"{path} is not a readable .npy file: {exc}") from None
    if matrix.ndim not in ndims:
        raise CliError(
            f"{path} holds a {matrix.ndim}-D array of shape {matrix.shape}; need {shape_text}"
        )
    if not np.issubdtype(matrix.dtype, np.integer):
        raise CliError(
            f"{path} holds {matrix.dtype} values; need integers (quantise the weights first)"
        )
    if matrix.size == 0:
        raise CliError(f"{path} holds an empty array of shape {matrix.shape}")
    return matrix


def save_array(path: str, array: np.ndarray) -> None:
    """Write `array` to `path` as .npy atomically: a temporary file, then a rename.

    A reader never sees a half-written file, and a failure leaves no file behind.
    """
    target = Path(path)
    if target.is_dir():
        raise CliError(f"cannot write {path}: it is a directory")
    directory = target.parent
    if not directory.is_dir():
        raise CliError(f"cannot write {path}: directory {str(directory)!r} does not exist")
    try:
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- configuration options shared by generate, spmv, synth and board -------------------------


def add_config_options(parser) -> None:
    parser.add_argument("--config", metavar="C.toml",
                        help="configuration file (keys of DESIGN section 2; default: built-in "
                             "defaults, as configs/default.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter (repeatable)")


def config_from(args):
    from bbsparse.golden.config import ConfigError, load_config

    try:
        return load_config(args.config, args.set)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
