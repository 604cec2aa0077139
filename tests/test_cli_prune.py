"""``bbsparse prune``: results, the summary line, and one-line errors that write nothing."""

import subprocess
import sys

import numpy as np
import pytest

from bbsparse.cli import main
from bbsparse.golden.prune import check_bbs, prune_bbs, prune_block, prune_nm, prune_unstructured

SEED = 20240611


@pytest.fixture
def weights(tmp_path):
    """A random int8 matrix of 6 x 16 saved as W.npy; returns (path, matrix)."""
    matrix = np.random.default_rng(SEED).integers(-128, 128, (6, 16)).astype(np.int8)
    path = tmp_path / "W.npy"
    np.save(path, matrix)
    return path, matrix


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_prune_bbs(weights, tmp_path, capsys):
    path, matrix = weights
    out = tmp_path / "P.npy"
    status, stdout, stderr = run(
        capsys, "prune", "--weights", path, "--bank-size", 4, "--nnz-per-bank", 1, "--out", out
    )
    assert (status, stderr) == (0, "")
    pruned = np.load(out)
    assert pruned.dtype == np.int8
    assert (pruned == prune_bbs(matrix, 4, 1)).all()
    assert check_bbs(pruned, 4, 1) is None
    kept = np.count_nonzero(pruned)
    assert stdout == (
        f"{out}: 6x16 int8, bbs 1/4: {kept} of 96 weights nonzero (density {kept / 96:.4f})\n"
    )
    # Only the result is left behind: no temporary file; and it is not made private.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.npy", "W.npy"]
    assert out.stat().st_mode & 0o777 == path.stat().st_mode & 0o777


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Without --nnz, as many as BBS 1/4 keeps: 6 * 4 banks * 1 = 24.
        (["--pattern", "unstructured"], lambda W: prune_unstructured(W, 24)),
        (["--pattern", "unstructured", "--nnz", "10"], lambda W: prune_unstructured(W, 10)),
        # 24 nonzeros in 2x2 blocks: 6 of the 24 blocks.
        (["--pattern", "block", "--block", "2"], lambda W: prune_block(W, 2, 6)),
        (["--pattern", "block", "--block", "4", "--blocks", "2"], lambda W: prune_block(W, 4, 2)),
        # N:M from --n/--m, or from the bank options.
        (["--pattern", "nm", "--n", "2", "--m", "4"], lambda W: prune_nm(W, 2, 4)),
        (["--pattern", "nm"], lambda W: prune_nm(W, 1, 4)),
    ],
)
def test_prune_other_patterns(weights, tmp_path, capsys, options, expected):
    path, matrix = weights
    out = tmp_path / "P.npy"
    argv = ["prune", "--weights", path, "--out", out, "--bank-size", 4, "--nnz-per-bank", 1]
    status, stdout, _ = run(capsys, *argv, *options)
    assert status == 0
    assert (np.load(out) == expected(matrix)).all()
    assert stdout.count("\n") == 1 and "density" in stdout


def test_nm_without_bank_options(weights, tmp_path, capsys):
    path, matrix = weights
    out = tmp_path / "P.npy"
    status, _, _ = run(capsys, "prune", "--weights", path, "--out", out, "--pattern", "nm",
                       "--n", 1, "--m", 2)  # fmt: skip
    assert status == 0 and (np.load(out) == prune_nm(matrix, 1, 2)).all()


def test_output_is_replaced_atomically(weights, tmp_path, capsys):
    path, matrix = weights
    out = tmp_path / "P.npy"
    out.write_bytes(b"old")
    status, _, _ = run(
        capsys, "prune", "--weights", path, "--bank-size", 8, "--nnz-per-bank", 2, "--out", out
    )
    assert status == 0 and (np.load(out) == prune_bbs(matrix, 8, 2)).all()


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    ("make_weights", "options", "message"),
    [
        (lambda d: d / "absent.npy", [], "cannot read {w}: No such file or directory"),
        (lambda d: d, [], "{w} is a directory, not a .npy file"),
        (lambda d: _write(d / "text.npy", b"1 2 3\n"), [], "{w} is not a .npy file"),
        (
            lambda d: _npz(d / "W.npz"),
            [],
            "{w} is not a .npy file (a .npz archive; save one array with numpy.save)",
        ),
        (
            lambda d: _write(d / "cut.npy", _npy_bytes(np.zeros((4, 8), np.int8))[:-10]),
            [],
            "{w} is not a readable .npy file",
        ),
        (
            lambda d: save(d, "obj.npy", np.array([[1, None]], dtype=object)),
            [],
            "{w} holds Python objects; need an integer matrix",
        ),
        (
            lambda d: save(d, "F.npy", np.zeros((2, 8))),
            [],
            "{w} holds float64 values; need integers (quantise the weights first)",
        ),
        (
            lambda d: save(d, "V.npy", np.zeros(8, np.int8)),
            [],
            "{w} holds a 1-D array of shape (8,); need a 2-D matrix (rows, cols)",
        ),
        (
            lambda d: save(d, "E.npy", np.zeros((0, 8), np.int8)),
            [],
            "{w} holds an empty array of shape (0, 8)",
        ),
        (
            lambda d: save(d, "W.npy", np.ones((2, 10), np.int8)),
            [],
            "{w} has 10 columns, not a multiple of --bank-size (4)",
        ),
        (None, ["--nnz-per-bank", "5"], "--nnz-per-bank (5) must not exceed --bank-size (4)"),
        (None, ["--bank-size", "0"], "argument --bank-size: must be a positive integer, not '0'"),
        (None, ["--bank-size", "x"], "argument --bank-size: must be a positive integer, not 'x'"),
        (None, ["--pattern", "csr"], "argument --pattern: invalid choice: 'csr'"),
        (None, ["--block", "2"], "--block applies to --pattern block, not bbs"),
        (None, ["--pattern", "block"], "--pattern block needs --block"),
        (None, ["--pattern", "nm", "--n", "2"], "--pattern nm needs both --n and --m"),
        (None, ["--pattern", "nm", "--n", "3", "--m", "2"], "--n (3) must not exceed --m (2)"),
        (None, ["--pattern", "nm", "--n", "1", "--m", "3"], "{w} has 16 columns, not a multiple"),
        (None, ["--pattern", "unstructured", "--nnz", "97"], "--nnz (97) exceeds the 96 weights"),
        (
            None,
            ["--pattern", "block", "--block", "4", "--blocks", "9"],
            "--blocks (9) exceeds the 8 blocks of 4x4",
        ),
    ],
)
def test_prune_errors(weights, tmp_path, capsys, make_weights, options, message):
    path = weights[0] if make_weights is None else make_weights(tmp_path)
    out = tmp_path / "out" / "P.npy"
    out.parent.mkdir()
    argv = ["prune", "--weights", path, "--bank-size", "4", "--nnz-per-bank", "1", "--out", out]
    # Later options override the defaults above (argparse keeps the last value).
    status, stdout, stderr = run(capsys, *argv, *options)
    assert status == 2
    assert stdout == ""
    assert stderr.startswith("bbsparse: error: ") and stderr.count("\n") == 1
    assert message.format(w=path) in stderr
    assert list(out.parent.iterdir()) == []  # nothing written, not even a temporary file


def _write(path, data):
    path.write_bytes(data)
    return path


def _npz(path):
    np.savez(path, W=np.zeros((2, 4), np.int8))
    return path


def _npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_missing_options_and_output_directory(weights, tmp_path, capsys):
    path, _ = weights
    status, _, stderr = run(capsys, "prune", "--weights", path)
    assert status == 2
    assert stderr == (
        "bbsparse: error: the following arguments are required: --out "
        "(see 'bbsparse prune --help')\n"
    )
    status, _, stderr = run(capsys, "prune", "--weights", path, "--out", tmp_path / "P.npy")
    assert (status, stderr) == (2, "bbsparse: error: --pattern bbs needs --bank-size and "
                                   "--nnz-per-bank\n")  # fmt: skip
    out = tmp_path / "missing" / "P.npy"
    status, _, stderr = run(
        capsys, "prune", "--weights", path, "--bank-size", 4, "--nnz-per-bank", 1, "--out", out
    )
    assert status == 2 and "directory" in stderr and "does not exist" in stderr
    assert not out.parent.exists()


def test_no_command(capsys):
    status, _, stderr = run(capsys)
    assert status == 2 and stderr.startswith("bbsparse: error: ")


def test_help_exits_zero(capsys):
    status, stdout, _ = run(capsys, "prune", "--help")
    assert status == 0 and "--nnz-per-bank" in stdout and "unstructured" in stdout


def test_python_dash_m(weights, tmp_path):
    path, matrix = weights
    out = tmp_path / "P.npy"
    command = [sys.executable, "-m", "bbsparse", "prune", "--weights", str(path),
               "--bank-size", "4", "--nnz-per-bank", "2", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: 6x16 int8, bbs 2/4: ")
    assert (np.load(out) == prune_bbs(matrix, 4, 2)).all()
    command[command.index("4")] = "5"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == (
        f"bbsparse: error: {path} has 16 columns, not a multiple of --bank-size (5)\n"
    )
