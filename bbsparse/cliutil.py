"""What every subcommand of ``bbsparse`` shares: the one-line error, bounded number types, the
configuration options, and the file helpers (checked loading, atomic writing).

The command modules (:mod:`bbsparse.cli`, :mod:`bbsparse.synth_commands`) import these; this
module imports none of them, so the command line has no import cycle.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PROG", "CliError", "MoveFile", "Parser", "add_config_options", "check_folder",
    "check_outputs", "config_from", "count", "load_floats", "load_integers", "load_matrix",
    "megahertz", "minutes", "number_type", "positive_int", "probability", "read_bytes",
    "save_array", "staging_file", "write_outputs",
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
#: A clock frequency (``--freq``, ``--clock-mhz``).
megahertz = number_type(float, lambda v: 0 < v < 2000, "a frequency in MHz")
#: A time limit in minutes (``--pnr-time-limit``): above 0, at most a week.
minutes = number_type(float, lambda v: 0 < v <= 10000, "a number of minutes above 0")


# -- reading: one loader that checks before it allocates -----------------------------------

#: The longest .npy header numpy reads (numpy.lib.format's default).
NPY_MAX_HEADER = 10_000


def _regular_file(path: str, noun: str) -> os.stat_result:
    """The status of `path`, which must be a regular file (a folder, a device or a pipe could
    block or never end); CliError naming `path` otherwise (`noun`: what it should be)."""
    try:
        status = os.stat(path)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise CliError(f"{path} is a directory, not {noun}")
    if not stat.S_ISREG(status.st_mode):
        raise CliError(f"{path} is not a regular file; need {noun}")
    return status


def read_bytes(path: str, limit: int, noun: str) -> bytes:
    """The contents of the regular file `path` (`noun`: what it should be), refused, naming
    it, if it holds more than `limit` bytes: the size is checked before the file is read."""
    status = _regular_file(path, noun)
    if status.st_size > limit:
        raise CliError(f"{path} holds {status.st_size} bytes; {noun} holds at most {limit}")
    try:
        with open(path, "rb") as stream:
            return stream.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def load_matrix(path: str) -> np.ndarray:
    """A 2-D integer matrix from a .npy file; CliError with one clear line otherwise."""
    return load_integers(path, (2,), "a 2-D matrix (rows, cols)")


def _npy_header(path: str, stream, size: int) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of the .npy file open as `stream`, checked
    against the file's `size` before anything of the declared size is read."""
    from numpy.lib import format as npy

    magic = stream.read(6)
    if magic != b"\x93NUMPY":
        hint = " (a .npz archive; save one array with numpy.save)" if magic[:2] == b"PK" else ""
        raise CliError(f"{path} is not a .npy file{hint}")
    version = tuple(stream.read(2))
    # Version 3.0 differs only by a UTF-8 header, which numpy writes for structured dtypes
    # with non-Latin-1 field names: never for an integer array.
    readers = {(1, 0): ("<H", npy.read_array_header_1_0), (2, 0): ("<I", npy.read_array_header_2_0)}
    if version not in readers:
        raise CliError(f"{path} is not a readable .npy file: format version "
                       f"{'.'.join(map(str, version)) or 'missing'} (need 1.0 or 2.0)")
    length_format, reader = readers[version]
    length_bytes = stream.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise CliError(f"{path} is not a readable .npy file: it ends inside the header")
    (header_length,) = struct.unpack(length_format, length_bytes)
    offset = stream.tell() + header_length
    if offset > size:
        raise CliError(f"{path} is not a readable .npy file: it declares a header of "
                       f"{header_length} bytes and holds {size - stream.tell()} after the magic")
    if header_length > NPY_MAX_HEADER:
        raise CliError(f"{path} is not a readable .npy file: a header of {header_length} bytes "
                       f"(numpy reads at most {NPY_MAX_HEADER})")
    stream.seek(6 + 2)
    try:
        shape, fortran, dtype = reader(stream, max_header_size=NPY_MAX_HEADER)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted header bytes
        # numpy parses the header with tokenize and ast.literal_eval: ValueError, SyntaxError,
        # tokenize.TokenError, TypeError, RecursionError, MemoryError... all mean "malformed".
        first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        reason = " ".join(first.split())[:120] or type(exc).__name__
        raise CliError(f"{path} is not a readable .npy file: malformed header ({reason})") \
            from None
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise CliError(f"{path} is not a readable .npy file: shape {shape} in its header")
    return shape, fortran, dtype, offset


def load_floats(path: str, ndims: tuple[int, ...], shape_text: str) -> np.ndarray:
    """A non-empty real array (float or integer .npy) of one of `ndims` dimensions, as
    float64, checked as :func:`load_integers` checks; NaN and infinity are refused."""
    array = load_integers(path, ndims, shape_text, kinds="iuf")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise CliError(f"{path} holds {array[position]} at {list(position)}; need finite "
                       f"numbers")
    return array


def load_integers(path: str, ndims: tuple[int, ...], shape_text: str,
                  kinds: str = "iu") -> np.ndarray:
    """A non-empty integer array of one of `ndims` dimensions from a .npy file.

    Everything is checked before the data is read: the header (parsed by numpy's own
    functions, any failure refused as a malformed header), the dtype, the number of
    dimensions, and the declared size against the bytes the file holds, so neither a corrupt
    header nor one declaring a huge shape can raise anything but a CliError.
    """
    from numpy.lib import format as npy

    size = _regular_file(path, "a .npy file").st_size
    try:
        with open(path, "rb") as stream:
            shape, fortran, dtype, offset = _npy_header(path, stream, size)
            if dtype.hasobject:
                raise CliError(f"{path} holds Python objects; need "
                               + ("an integer matrix" if kinds == "iu" else "numbers"))
            if len(shape) not in ndims:
                raise CliError(f"{path} holds a {len(shape)}-D array of shape {shape}; need "
                               f"{shape_text}")
            if dtype.kind not in kinds or dtype.subdtype is not None:
                if kinds == "iu":
                    raise CliError(f"{path} holds {dtype} values; need integers (quantise "
                                   f"the weights first)")
                raise CliError(f"{path} holds {dtype} values; need real numbers")
            count = math.prod(shape)
            if count == 0:
                raise CliError(f"{path} holds an empty array of shape {shape}")
            needed = count * dtype.itemsize
            if needed > size - offset:
                raise CliError(f"{path} is not a readable .npy file: its header declares shape "
                               f"{shape} of {dtype} ({needed} bytes) and the file holds "
                               f"{size - offset} bytes of data")
            stream.seek(0)
            try:
                array = npy.read_array(stream, allow_pickle=False,
                                       max_header_size=NPY_MAX_HEADER)
            except (ValueError, EOFError) as exc:
                raise CliError(f"{path} is not a readable .npy file: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if array.shape != shape or array.dtype != dtype:  # the checks above were of this array
        raise CliError(f"{path} is not a readable .npy file: it reads as {array.shape} "
                       f"{array.dtype}, not as its header declares")
    return array


# -- writing: one atomic writer for every output ---------------------------------------------


@dataclass(frozen=True)
class MoveFile:
    """An output that a tool has already written to `source` (a temporary file from
    :func:`staging_file`), moved into place with the others."""

    source: Path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _check_folder_writable(folder: Path, shown: str) -> None:
    """CliError unless a file can be created in the existing folder `folder` (tried: access
    bits do not tell, root ignores them and some file systems refuse everyone)."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".bbsparse-probe-")
    except OSError as exc:
        raise CliError(f"cannot write into {shown}: {exc.strerror}") from None
    os.close(handle)
    os.unlink(probe)


def check_folder(path: str | Path) -> None:
    """CliError unless `path` is a folder files can be written into, or can become one (its
    nearest existing ancestor is a writable folder). Creates nothing."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            raise CliError(f"cannot write into {path}: it is not a directory")
        _check_folder_writable(folder, str(path))
        return
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CliError(f"cannot create {path}: {str(ancestor)!r} is not a directory")
    _check_folder_writable(ancestor, str(path))


def _make_folder(folder: Path, created: list[Path]) -> None:
    """Create `folder` and its missing parents, recording each one made in `created`."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir()
        created.append(each)


def check_outputs(paths, *, make_dirs: bool = False) -> None:
    """CliError unless every file of `paths` can be written: named once, not a folder, in an
    existing (or, with `make_dirs`, creatable) writable folder. Creates nothing."""
    seen: dict[str, str] = {}
    for path in paths:
        target = Path(path)
        key = os.path.realpath(target)
        if key in seen:
            raise CliError(f"cannot write {path}: it is also {seen[key]}, one file cannot "
                           f"hold both")
        seen[key] = str(path)
        if target.is_dir():
            raise CliError(f"cannot write {path}: it is a directory")
        if target.exists() and not target.is_file():
            raise CliError(f"cannot write {path}: it is not a regular file")
        folder = target.parent
        if make_dirs:
            check_folder(folder)
        elif not folder.is_dir():
            what = "is not a directory" if folder.exists() else "does not exist"
            raise CliError(f"cannot write {path}: directory {str(folder)!r} {what}")
        else:
            _check_folder_writable(folder, str(folder))


def staging_file(path: str | Path) -> Path:
    """An empty temporary file beside `path` for a tool to write into; hand it to
    :func:`write_outputs` as :class:`MoveFile` (or delete it on failure)."""
    target = Path(path)
    check_outputs([target])
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                             suffix=".tmp")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    os.close(handle)
    return Path(temporary)


def _stage(target: Path, content, only_if_changed: bool) -> Path | None:
    """Write `content` to a temporary file beside `target`; None if `only_if_changed` and
    `target` already holds exactly it."""
    if isinstance(content, MoveFile):
        if content.source.parent.resolve() == target.parent.resolve():
            return content.source
        data = None
    elif isinstance(content, np.ndarray):
        data = None
    else:
        data = content.encode() if isinstance(content, str) else bytes(content)
        if only_if_changed and target.is_file() and target.stat().st_size == len(data) \
                and target.read_bytes() == data:
            return None
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(content, MoveFile):
                with open(content.source, "rb") as source:
                    shutil.copyfileobj(source, stream)
            elif isinstance(content, np.ndarray):
                np.save(stream, content, allow_pickle=False)
            else:
                stream.write(data)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename every temporary file over its target; if one rename fails, undo the earlier
    ones (their old contents are kept as hard links until the end), so it is all or none."""
    done: list[tuple[Path, Path | None, bool]] = []
    try:
        for target, temporary in staged:
            backup = None
            existed = target.exists()
            if len(staged) > 1 and existed:
                backup = temporary.with_name(temporary.name + ".old")
                try:
                    os.link(target, backup)
                except OSError:
                    backup = None  # no hard links here: the old file cannot be restored
            os.replace(temporary, target)
            done.append((target, backup, existed))
    except OSError as exc:
        for written, backup, existed in reversed(done):
            if backup is not None:
                os.replace(backup, written)
            elif not existed:
                written.unlink(missing_ok=True)
            # else: an old file with no backup stays replaced; deleting it would lose more.
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        for _, backup, _ in done:
            if backup is not None:
                backup.unlink(missing_ok=True)


def write_outputs(files, *, only_if_changed: bool = False, make_dirs: bool = False) -> list[Path]:
    """Write every output of a command, all or none: `files` maps each path to its content
    (``str``, ``bytes``, a NumPy array saved as .npy, or a :class:`MoveFile`).

    Every path is checked first (:func:`check_outputs`); then every content goes to a
    temporary file beside its path, and only when all are written are they renamed into
    place. A reader never sees a half-written file, and a failure leaves no file behind
    (nor a folder that `make_dirs` created). With `only_if_changed`, a file that already
    holds its text is left untouched (its timestamp keeps build caches valid). Returns the
    paths written."""
    targets = [(Path(path), content) for path, content in files.items()]
    check_outputs([t for t, _ in targets], make_dirs=make_dirs)
    created: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    current = targets[0][0] if targets else None
    committed = False
    try:
        for target, content in targets:
            current = target
            if make_dirs:
                _make_folder(target.parent, created)
            temporary = _stage(target, content, only_if_changed)
            if temporary is not None:
                staged.append((target, temporary))
        _commit(staged)
        committed = True
    except OSError as exc:
        raise CliError(f"cannot write {current}: {exc.strerror or exc}") from None
    finally:
        if not committed:
            for _, temporary in staged:
                temporary.unlink(missing_ok=True)
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    pass
        for _, content in targets:
            if isinstance(content, MoveFile):
                content.source.unlink(missing_ok=True)
    return [target for target, _ in staged]


def save_array(path: str, array: np.ndarray) -> None:
    """Write `array` to `path` as .npy atomically (:func:`write_outputs`)."""
    write_outputs({path: array})


# -- configuration options shared by generate, spmv, synth and board -------------------------


def add_config_options(parser) -> None:
    parser.add_argument("--config", metavar="C.toml",
                        help="configuration file (keys of DESIGN section 2; default: built-in "
                             "defaults, as configs/default.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter (repeatable)")


def config_from(args):
    """The configuration of ``--config`` (read by :func:`read_bytes`) and ``--set``."""
    from bbsparse.golden.config import MAX_CONFIG_BYTES, ConfigError, parse_config

    try:
        if args.config is None:
            return parse_config(b"", "the built-in defaults", args.set)
        data = read_bytes(args.config, MAX_CONFIG_BYTES, "a configuration file")
        return parse_config(data, args.config, args.set)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
