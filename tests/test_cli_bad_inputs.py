"""Every bad input a user can give ends as one line on stderr, ``bbsparse: error: ...``, exit
status 2, and nothing written (DESIGN §8.1); the cases an outside campaign of bad inputs
found, each reproduced here, and the writer and loader every command shares.

The RTL cases (``spmv`` runs, the index check of DESIGN §4.2) run under Verilator: run with
``eval "$(.venv/bin/python -m bbsparse.toolchain)"`` first.
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from bbsparse import cliutil
from bbsparse.cli import main
from bbsparse.cliutil import CliError, MoveFile, write_outputs
from bbsparse.golden import prune, spmv
from bbsparse.golden.config import Config

SMALL = ["--set", "lanes=4", "--set", "pes=2", "--set", "bank_size=4", "--set", "nnz_per_bank=1",
         "--set", "cols=32"]
SMALL_CONFIG = Config(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=32)


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(status, stderr, *fragments):
    """Exit status 2 and exactly one line, ``bbsparse: error: ...``, holding `fragments`."""
    assert status == 2, stderr
    assert stderr.startswith("bbsparse: error: ") and stderr.count("\n") == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def files_in(folder: Path) -> list[str]:
    """Every file and folder under `folder` (temporary files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def problem(tmp_path):
    """W (10 x 32, BBS 1/4) and a batch of two x in `tmp_path/in`; outputs go to `tmp_path/out`."""
    rng = np.random.default_rng(9)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (tmp_path / "out").mkdir()
    W = prune.prune_bbs(rng.integers(-128, 128, size=(10, 32)), 4, 1).astype(np.int8)
    X = rng.integers(-128, 128, size=(2, 32)).astype(np.int8)
    np.save(inputs / "W.npy", W)
    np.save(inputs / "X.npy", X)
    return tmp_path, W, X


def spmv_argv(tmp_path, *extra, out=None):
    out = tmp_path / "out" / "Y.npy" if out is None else out
    return ["spmv", *SMALL, "--weights", tmp_path / "in" / "W.npy", "--x",
            tmp_path / "in" / "X.npy", "--out", out, *extra]


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder no file can be created in, for this user (root ignores mode bits: /sys)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
        folder.chmod(0o755)
        return
    (folder / "probe").unlink()
    folder.chmod(0o755)
    sys_folder = Path("/sys")
    try:
        (sys_folder / "bbsparse-probe").touch()
    except OSError:
        yield sys_folder
        return
    pytest.skip("no folder here refuses this user's writes")


# -- generate --------------------------------------------------------------------------------


def test_generate_unstructured_writes_both_files(tmp_path, capsys):
    """Was a KeyError traceback after both files were written."""
    out = tmp_path / "ug"
    status, stdout, stderr = run(capsys, "generate", "--set", "pattern=unstructured",
                                 "--out", out)
    assert (status, stderr) == (0, "")
    assert files_in(out) == ["bbs_spmv.json", "bbs_spmv.v"]
    info = json.loads((out / "bbs_spmv.json").read_text())
    assert info["parameters"]["pattern"] == "unstructured"
    assert "x_order" in info["derived"] and "cycles_per_row" not in info["derived"]
    assert "module bbs_spmv(" in (out / "bbs_spmv.v").read_text()
    assert "unstructured" in stdout


def test_generate_writes_nothing_when_the_json_cannot_be_written(tmp_path, capsys):
    """Was: bbs_spmv.v left behind when bbs_spmv.json could not be written."""
    out = tmp_path / "gen"
    (out / "bbs_spmv.json").mkdir(parents=True)
    status, _, stderr = run(capsys, "generate", "--set", "lanes=4", "--out", out)
    assert_refused(status, stderr, f"cannot write {out / 'bbs_spmv.json'}: it is a directory")
    assert files_in(out) == ["bbs_spmv.json"]


def test_generate_into_a_file_or_a_readonly_folder(tmp_path, readonly_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, stderr = run(capsys, "generate", "--out", blocker / "gen")
    assert_refused(status, stderr, "is not a directory")
    status, _, stderr = run(capsys, "generate", "--out", readonly_dir / "gen")
    assert_refused(status, stderr, f"cannot write into {readonly_dir / 'gen'}")
    assert not (readonly_dir / "gen").exists()


def test_generate_creates_only_what_it_writes(tmp_path, capsys, monkeypatch):
    """A failure while the files are renamed into place undoes the earlier ones and removes
    the folders generate created."""
    out = tmp_path / "a" / "b"
    real_replace = os.replace
    calls = []

    def failing_replace(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(cliutil.os, "replace", failing_replace)
    status, _, stderr = run(capsys, "generate", "--set", "lanes=4", "--out", out)
    assert_refused(status, stderr, "bbs_spmv.json: No space left on device")
    assert len(calls) >= 2
    assert files_in(tmp_path) == []


# -- the .npy loader (prune and spmv share it) -----------------------------------------------


def npy_with_header(header: dict | str, data: bytes = b"", version=(1, 0)) -> bytes:
    text = header if isinstance(header, str) else repr(header)
    text = text + " " * (-(len(text) + 11) % 64) + "\n"
    length = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text.encode("latin1") + data


BAD_NPY = {
    # Was a tokenize.TokenError traceback.
    "corrupt header": (b"\x93NUMPY\x01\x00\x76\x00{garbage" + b"x" * 200,
                       "is not a readable .npy file: malformed header"),
    # Was an _ArrayMemoryError traceback: 8 TB declared, 64 bytes held.
    "huge shape": (npy_with_header({"descr": "<i8", "fortran_order": False,
                                    "shape": (10**6, 10**6)}, bytes(64)),
                   "declares shape (1000000, 1000000) of int64 (8000000000000 bytes)"),
    "huge version-2 header length": (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{",
                                     "declares a header of 4294967295 bytes"),
    "unknown version": (b"\x93NUMPY\x07\x00" + bytes(100), "format version 7.0"),
    "negative shape": (npy_with_header({"descr": "<i8", "fortran_order": False,
                                        "shape": (-1, 4)}), "shape (-1, 4) in its header"),
    "object dtype": (npy_with_header({"descr": "|O", "fortran_order": False, "shape": (2, 2)},
                                     bytes(32)), "holds Python objects"),
    "structured dtype": (npy_with_header({"descr": [("a", "<i4")], "fortran_order": False,
                                          "shape": (2, 2)}, bytes(16)), "need integers"),
    "truncated data": (npy_with_header({"descr": "<i4", "fortran_order": False,
                                        "shape": (4, 8)}, bytes(100)),
                       "(128 bytes) and the file holds 100 bytes of data"),
    "wrong ndim": (npy_with_header({"descr": "<i4", "fortran_order": False, "shape": (2, 2, 2)},
                                   bytes(32)), "holds a 3-D array of shape (2, 2, 2)"),
    "magic only": (b"\x93NUMPY", "format version missing"),
}


@pytest.mark.parametrize("name", list(BAD_NPY))
def test_prune_refuses_a_bad_npy(tmp_path, capsys, name):
    data, message = BAD_NPY[name]
    bad = tmp_path / "bad.npy"
    bad.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    start = time.monotonic()
    status, _, stderr = run(capsys, "prune", "--weights", bad, "--bank-size", 4,
                            "--nnz-per-bank", 1, "--out", out / "P.npy")
    assert_refused(status, stderr, f"{bad} ", message)
    assert files_in(out) == []
    assert time.monotonic() - start < 10  # nothing of the declared size was allocated


@pytest.mark.parametrize("name", ["corrupt header", "huge shape", "object dtype"])
@pytest.mark.parametrize("which", ["W", "X"])
def test_spmv_refuses_a_bad_npy(problem, capsys, name, which):
    tmp_path, _, _ = problem
    data, message = BAD_NPY[name]
    (tmp_path / "in" / f"{which}.npy").write_bytes(data)
    status, _, stderr = run(capsys, *spmv_argv(tmp_path))
    assert_refused(status, stderr, f"{which}.npy ", message)
    assert files_in(tmp_path / "out") == []


def test_the_loader_reads_what_numpy_writes(tmp_path):
    for array in (np.arange(12, dtype=">i2").reshape(3, 4),
                  np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
                  np.arange(5, dtype=np.int64)):
        path = tmp_path / "a.npy"
        np.save(path, array)
        loaded = cliutil.load_integers(str(path), (1, 2), "anything")
        assert loaded.dtype == array.dtype and np.array_equal(loaded, array)
    big_header = tmp_path / "v2.npy"
    with open(big_header, "wb") as stream:
        np.lib.format.write_array(stream, np.ones((2, 2), np.int32), version=(2, 0))
    assert cliutil.load_matrix(str(big_header)).sum() == 4


def test_loader_refuses_a_device(capsys):
    status, _, stderr = run(capsys, "prune", "--weights", "/dev/zero", "--bank-size", 4,
                            "--nnz-per-bank", 1, "--out", "/nonexistent/P.npy")
    assert_refused(status, stderr, "/dev/zero is not a regular file")


# -- configuration bounds and --set ----------------------------------------------------------


@pytest.mark.parametrize("sets, message", [
    # Was OverflowError.
    (["lanes=18446744073709551616"],
     "lanes must be at most 4096 (lanes x pes multipliers: more DSP blocks than the largest "
     "FPGAs have), not 18446744073709551616"),
    # Was MemoryError.
    (["cols=1099511627776"], "cols must be at most 1048576"),
    # These ran for minutes without output.
    (["weight_width=100000"], "weight_width must be at most 64 bits"),
    (["acc_width=10000000"], "acc_width must be at most 256 bits"),
    (["lanes=100000", "cols=800000"], "lanes must be at most 4096"),
    (["lanes=64", "pes=128"], "pes must keep lanes x pes within 4096 multipliers (more DSP "
                              "blocks than the largest FPGAs have): at most 64 with 64 lanes, "
                              "not 128"),
    (["pes=512", "cols=1048576"], "cols must keep the vector memories within 2**28 bits"),
    (["tree_levels_per_stage=100"], "tree_levels_per_stage must be at most 16"),
    (["bank_size=2048"], "bank_size must not exceed cols (1024), not 2048"),
    (["lanes=1" + "0" * 5000], "--set lanes: cannot read the value '1000"),
    (["pattern=[1, 2]"], "pattern must be one of 'bbs', 'unstructured', 'cbs', not [1, 2]"),
    (["pattern={a = 1}"], "pattern must be one of 'bbs', 'unstructured', 'cbs', not {'a': 1}"),
    # Was exit 0, bank_size silently dropped.
    (["lanes=4\nbank_size=4"], "--set lanes: one name=value a --set"),
])
def test_generate_refuses_out_of_bounds_parameters(tmp_path, capsys, sets, message):
    out = tmp_path / "gen"
    argv = ["generate", "--out", out]
    for item in sets:
        argv += ["--set", item]
    start = time.monotonic()
    status, _, stderr = run(capsys, *argv)
    assert_refused(status, stderr, message)
    assert time.monotonic() - start < 10
    assert not out.exists()


def test_the_largest_configurations_are_accepted():
    """The bounds are limits, not a cut below them: each one's edge builds."""
    Config(lanes=4096, pes=1, cols=4096, bank_size=8)
    Config(lanes=64, pes=64)
    Config(lanes=1, pes=1, cols=1 << 20, act_width=64)
    Config(weight_width=64, act_width=64, acc_width=256, out_width=256, out_shift=255)
    Config(tree_levels_per_stage=16)


def test_a_non_utf8_config_names_the_file_and_the_place(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_bytes(b"lanes = 4\n# caf\xe9\npes = 1\n")
    status, _, stderr = run(capsys, "generate", "--config", config, "--out", tmp_path / "g")
    assert_refused(status, stderr,
                   f"{config}: not UTF-8 text: byte 0xe9 at line 2, column 6")
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d, "is a directory, not a configuration file"),
    (lambda d: Path("/dev/zero"), "/dev/zero is not a regular file"),
    (lambda d: (d / "big.toml", (d / "big.toml").write_bytes(b"#" * (2 << 20)))[0],
     "holds 2097152 bytes; a configuration file holds at most 1048576"),
    (lambda d: (d / "deep.toml", (d / "deep.toml").write_text("lanes = " + "[" * 5000))[0],
     "deep.toml: "),
])
def test_a_config_file_is_checked_before_it_is_read(tmp_path, capsys, make, message):
    status, _, stderr = run(capsys, "generate", "--config", make(tmp_path),
                            "--out", tmp_path / "g")
    assert_refused(status, stderr, message)


# -- prune options ---------------------------------------------------------------------------


def test_prune_refuses_a_block_far_larger_than_the_matrix(tmp_path, capsys):
    """Was NumPy's "array is too big", naming no option."""
    weights = tmp_path / "W.npy"
    np.save(weights, np.arange(64, dtype=np.int8).reshape(4, 16))
    out = tmp_path / "out"
    out.mkdir()
    status, _, stderr = run(capsys, "prune", "--weights", weights, "--pattern", "block",
                            "--block", 99999999999, "--blocks", 1, "--out", out / "P.npy")
    assert_refused(status, stderr, "--block (99999999999) is too large for the 4x16 matrix",
                   "use a block of at most 4")
    assert files_in(out) == []
    # A block a little larger than a side is still one tile (padding under 4x).
    status, _, stderr = run(capsys, "prune", "--weights", weights, "--pattern", "block",
                            "--block", 5, "--blocks", 1, "--out", out / "P.npy")
    assert (status, stderr) == (0, "")


# -- board -----------------------------------------------------------------------------------


def test_board_refuses_an_out_it_cannot_write(tmp_path, readonly_dir, capsys):
    """Was a FileExistsError / OSError traceback; now refused before anything is built."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, stderr = run(capsys, "board", "--board", "icebreaker", "--out", blocker)
    assert_refused(status, stderr, f"cannot write into {blocker}: it is not a directory")
    assert blocker.read_text() == "x"
    status, _, stderr = run(capsys, "board", "--board", "icebreaker",
                            "--out", readonly_dir / "board")
    assert_refused(status, stderr, f"cannot write into {readonly_dir / 'board'}")


@pytest.mark.parametrize("argv, message", [
    # Was silently replaced by the board's 512.
    (["--board", "icebreaker", "--max-w-beats", "0"],
     "argument --max-w-beats: must be a positive integer, not '0'"),
    (["--board", "icebreaker", "--max-w-beats", "8"],
     "max_w_beats (--max-w-beats, the weight memory's depth) must be from cycles_per_row (16,"),
    (["--board", "icebreaker", "--max-w-beats", "65536"], "to 65535 (the 16-bit length"),
    # Was: the tools started on ~11.5 Mbit of weights for ~1 Mbit of block RAM.
    (["--board", "ulx3s", "--max-w-beats", "65535"],
     "weight memory: 1 x 65535 words x 176 bits = 640"),
])
def test_board_refuses_a_weight_memory_before_any_tool(tmp_path, capsys, argv, message):
    out = tmp_path / "board"
    start = time.monotonic()
    status, stdout, stderr = run(capsys, "board", *argv, "--out", out)
    assert_refused(status, stderr, message)
    assert stdout == "" and not out.exists()
    assert time.monotonic() - start < 30  # no tool ran


def test_the_boards_default_weight_memories_fit():
    from bbsparse.synth.boards import BOARDS, link_memories
    from bbsparse.synth.targets import fit_check

    for board in BOARDS.values():
        config = board.default_config()
        report = fit_check(board.target_info, config, "auto",
                           link_memories(config, board.max_w_beats))
        assert report.problems() == [], board.name
        roles = [m.role for m in report.memories]
        assert roles[-3:] == ["weight memory", "x buffer", "y buffer"]
    # The iCEBreaker's default board: 25 SB_RAM40_4K, as Yosys made them in a full build
    # (`bbsparse board --board icebreaker`; its y FIFO, for rows of 16 beats, is one word
    # in flip-flops).
    icebreaker = BOARDS["icebreaker"]
    config = icebreaker.default_config()
    assert fit_check(icebreaker.target_info, config, "auto",
                     link_memories(config, 512)).brams == 25


# -- spmv outputs ----------------------------------------------------------------------------


def test_spmv_refuses_an_out_whose_report_is_itself(problem, capsys):
    """Was exit 0, the report overwriting the result."""
    tmp_path, _, _ = problem
    out = tmp_path / "out" / "Y.json"
    status, _, stderr = run(capsys, *spmv_argv(tmp_path, out=out))
    assert_refused(status, stderr, f"--out {out}: the report goes beside the result as {out}")
    assert files_in(tmp_path / "out") == []


def test_spmv_refuses_a_report_path_that_is_a_folder(problem, capsys):
    """Was IsADirectoryError after Y.npy was written."""
    tmp_path, _, _ = problem
    (tmp_path / "out" / "Y.json").mkdir()
    status, _, stderr = run(capsys, *spmv_argv(tmp_path))
    assert_refused(status, stderr, f"cannot write {tmp_path / 'out' / 'Y.json'}: it is a "
                                   f"directory")
    assert files_in(tmp_path / "out") == ["Y.json"]


def test_spmv_refuses_waves_it_cannot_write(problem, readonly_dir, capsys):
    """Was exit 0, no VCD and no message."""
    tmp_path, _, _ = problem
    missing = tmp_path / "nowhere" / "run.vcd"
    status, _, stderr = run(capsys, *spmv_argv(tmp_path, "--waves", missing))
    assert_refused(status, stderr, f"cannot write {missing}: directory "
                                   f"{str(missing.parent)!r} does not exist")
    status, _, stderr = run(capsys, *spmv_argv(tmp_path, "--waves", readonly_dir / "run.vcd"))
    assert_refused(status, stderr, f"cannot write into {readonly_dir}")
    status, _, stderr = run(capsys, *spmv_argv(tmp_path, "--waves", tmp_path / "out" / "Y.npy"))
    assert_refused(status, stderr, "one file cannot hold both")
    assert files_in(tmp_path / "out") == []


def test_spmv_writes_the_waves_with_the_results(problem, capsys):
    tmp_path, W, X = problem
    waves = tmp_path / "out" / "run.vcd"
    status, stdout, _ = run(capsys, *spmv_argv(tmp_path, "--waves", waves))
    assert status == 0
    assert files_in(tmp_path / "out") == ["Y.json", "Y.npy", "run.vcd"]
    assert waves.read_text().startswith("$version") and "s_axis_w_tvalid" in waves.read_text()
    assert f"waveform: {waves}" in stdout
    assert np.array_equal(np.load(tmp_path / "out" / "Y.npy"), spmv.spmv(SMALL_CONFIG, W, X))


def test_spmv_survives_long_back_pressure(problem, capsys):
    """Was RuntimeError "simulation stopped after 103584 cycles": the harness's cycle budget,
    not the RTL. The wrapper's watchdog counts only cycles in which it offered everything."""
    tmp_path, W, X = problem
    status, _, stderr = run(capsys, *spmv_argv(tmp_path, "--y-burst", "0.99",
                                               "--y-stall", "0.9"))
    assert status == 0, stderr
    report = json.loads((tmp_path / "out" / "Y.json").read_text())
    assert report["golden_mismatches"] == 0 and report["y_tlast_ok"]
    assert report["y_wait_cycles"] > 100_000  # the run was longer than the old budget


def test_the_harness_still_catches_a_hang(tmp_path):
    """y beats that never come: the core is offered everything and transfers nothing."""
    from bbsparse.tb.harness import HANG_CYCLES, SimulationError, simulate

    config = SMALL_CONFIG
    W = prune.prune_bbs(np.ones((2, 32), np.int64), 4, 1)
    packed = config.format.pack(config, W, np.ones((1, 32), np.int64))
    with pytest.raises(SimulationError, match=rf"the core hangs: no transfer in {HANG_CYCLES} "
                                              r"cycles .* 1 of 2 y beats received"):
        simulate(config, packed.x_words, packed.w_words, vectors=1, y_beats=2,
                 workdir=tmp_path)


def test_spmv_exit_status_includes_y_tlast(problem, capsys, monkeypatch):
    """Was: exit 0 whatever y_tlast_ok said."""
    from bbsparse.tb import harness

    tmp_path, W, X = problem

    def wrong_tlast(config, W, X, **options):
        report = {"cycles": 100, "ideal_cycles": 90, "utilization": 0.5,
                  "utilization_steady": 0.6, "sim_cycles_per_second": 1e6, "error": False,
                  "y_tlast_ok": False}
        return harness.SimResult(y=spmv.spmv(config, W, X), report=report)

    monkeypatch.setattr(harness, "run_spmv", wrong_tlast)
    status, stdout, stderr = run(capsys, *spmv_argv(tmp_path))
    assert status == 1
    assert stderr == ("bbsparse: y tlast was not on exactly the last row group of every "
                      "matrix\n")
    assert "all match" in stdout
    assert files_in(tmp_path / "out") == ["Y.json", "Y.npy"]


# -- the core's index check (DESIGN §4.2), under Verilator -----------------------------------


BANK6 = Config(lanes=3, pes=2, bank_size=6, nnz_per_bank=2, cols=36)


def _entry_bits(config: Config, entry: int) -> tuple[int, int]:
    """(shift of the value, shift of the index) of entry `entry` of a w beat."""
    base = entry * config.w_entry_width
    return base, base + config.weight_width


def _set_entry(config: Config, word: int, entry: int, value: int, index: int) -> int:
    value_at, index_at = _entry_bits(config, entry)
    entry_mask = (1 << config.w_entry_width) - 1
    word &= ~(entry_mask << value_at)
    word |= (value & ((1 << config.weight_width) - 1)) << value_at
    return word | index << index_at


@pytest.mark.parametrize("value, index, error", [
    (None, None, 0),  # as packed
    (5, 6, 1),  # a nonzero slot with index 6
    (-3, 7, 1),  # a nonzero slot with index 7
    (0, 7, 0),  # a zero-valued slot may carry any index
], ids=["as-packed", "nonzero-index6", "nonzero-index7", "zero-index7"])
def test_an_index_past_the_bank_raises_error(tmp_path, value, index, error):
    """bank_size 6 leaves indices 6 and 7 of the 3 index bits: on a nonzero slot such an
    index would read the next bank's activation, so `error` must rise; a zero-valued slot may
    carry any index (DESIGN §4)."""
    from bbsparse.tb.harness import simulate

    config = BANK6
    rng = np.random.default_rng(6)
    W = prune.prune_bbs(rng.integers(1, 100, size=(4, 36)), 6, 2)
    X = rng.integers(-128, 128, size=(1, 36))
    packed = config.format.pack(config, W, X)
    w_words = list(packed.w_words)
    entry = config.pes * config.lanes - 1  # PE 1, lane 2, of the second beat
    if value is not None:
        w_words[1] = _set_entry(config, w_words[1], entry, value, index)
    raw = simulate(config, packed.x_words, w_words, vectors=1, y_beats=2, workdir=tmp_path)
    assert raw.figures["error"] == error


# -- the one writer --------------------------------------------------------------------------


def test_write_outputs_is_all_or_none(tmp_path, monkeypatch):
    old = tmp_path / "a.txt"
    old.write_text("old")
    real_replace = os.replace
    calls = []

    def failing_replace(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(cliutil.os, "replace", failing_replace)
    with pytest.raises(CliError, match=r"cannot write .*b\.npy: Input/output error"):
        write_outputs({old: "new", tmp_path / "b.npy": np.arange(3)})
    monkeypatch.undo()
    assert old.read_text() == "old"  # restored from its hard link
    assert files_in(tmp_path) == ["a.txt"]


def test_write_outputs_text_bytes_arrays_and_moves(tmp_path):
    staged = cliutil.staging_file(tmp_path / "c.bin")
    staged.write_bytes(b"from a tool")
    written = write_outputs({tmp_path / "a.txt": "text", tmp_path / "b.npy": np.arange(3),
                             tmp_path / "c.bin": MoveFile(staged), tmp_path / "d": b"\x00"})
    assert len(written) == 4
    assert (tmp_path / "a.txt").read_text() == "text"
    assert np.array_equal(np.load(tmp_path / "b.npy"), np.arange(3))
    assert (tmp_path / "c.bin").read_bytes() == b"from a tool"
    assert files_in(tmp_path) == ["a.txt", "b.npy", "c.bin", "d"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    # Unchanged text is left alone (its timestamp keeps build caches valid).
    before = (tmp_path / "a.txt").stat().st_mtime_ns
    assert write_outputs({tmp_path / "a.txt": "text"}, only_if_changed=True) == []
    assert (tmp_path / "a.txt").stat().st_mtime_ns == before


def test_write_outputs_refuses_one_path_twice(tmp_path):
    with pytest.raises(CliError, match="one file cannot hold both"):
        write_outputs({str(tmp_path / "a"): "1", f"{tmp_path}/./a": "2"})
    assert files_in(tmp_path) == []


def test_save_array_goes_through_the_writer(tmp_path):
    """save_array goes through the same writer."""
    cliutil.save_array(str(tmp_path / "y.npy"), np.arange(4))
    buffer = io.BytesIO((tmp_path / "y.npy").read_bytes())
    assert np.array_equal(np.load(buffer), np.arange(4))


@pytest.mark.parametrize("command", [["synth", "--target", "ecp5-25k"],
                                     ["board", "--board", "ulx3s"]])
def test_a_seed_nextpnr_cannot_read_is_refused_when_parsed(tmp_path, capsys, command):
    status, _, stderr = run(capsys, *command, "--seed", 2**40, "--out", tmp_path / "o")
    assert_refused(status, stderr, "argument --seed: must be an integer from -2147483648 to "
                                   "2147483647, not '1099511627776'")
    assert not (tmp_path / "o").exists()
