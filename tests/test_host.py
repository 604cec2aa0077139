"""The host driver (:mod:`bbsparse.host`) without hardware: its framing, and its operations
over an in-memory transport answered by a small Python model of the board's link.

The RTL of the link is checked against this same driver in tests/test_rtl_board.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from bbsparse.golden import csb
from bbsparse.golden.config import Config
from bbsparse.golden.prune import prune_bbs
from bbsparse.golden.spmv import spmv
from bbsparse.host import (
    INFO_FIELDS,
    INFO_VERSION,
    BoardError,
    BoardInfo,
    Command,
    Flags,
    Host,
    LinkError,
    Status,
    beat_bytes,
    bytes_to_ints,
    frame,
    ints_to_bytes,
)

CFG = Config(lanes=2, pes=2, cols=16, bank_size=4, nnz_per_bank=1)
MAX_W_BEATS = 16


class BoardModel:
    """The board's side of the protocol in Python: a reference for the driver's tests
    (the y it returns comes from the golden model)."""

    def __init__(self, cfg: Config, max_w_beats: int):
        self.cfg = cfg
        self.max_w_beats = max_w_beats
        self.w_ints: list[int] | None = None
        self.x_ints: list[int] | None = None
        self.y_ints: list[int] | None = None
        self.cycles = 0
        self.pending = bytearray()
        self.replies = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        while self._step():
            pass

    def read(self, count: int) -> bytes:
        data = bytes(self.replies[:count])
        del self.replies[:count]
        return data

    def _step(self) -> bool:
        if len(self.pending) < 3:
            return False
        command, length = self.pending[0], int.from_bytes(self.pending[1:3], "little")
        unit = {Command.LOAD_W: beat_bytes(self.cfg.w_beat_width),
                Command.LOAD_X: beat_bytes(self.cfg.x_beat_width)}.get(command, 1)
        if len(self.pending) < 3 + length * unit:
            return False
        payload = bytes(self.pending[3:3 + length * unit])
        del self.pending[:3 + length * unit]
        self.replies += self._answer(command, length, payload)
        return True

    def _answer(self, command: int, length: int, payload: bytes) -> bytes:
        cfg = self.cfg
        ok = bytes([Status.OK])
        if command == Command.LOAD_W:
            self.w_ints = None
            if not 0 < length <= self.max_w_beats or length % cfg.cycles_per_row:
                return bytes([Status.BAD_LENGTH])
            self.w_ints = bytes_to_ints(payload, cfg.w_beat_width)
            return ok
        if command == Command.LOAD_X:
            self.x_ints = None
            if length != cfg.x_beats:
                return bytes([Status.BAD_LENGTH])
            self.x_ints = bytes_to_ints(payload, cfg.x_beat_width)
            return ok
        if command not in set(Command):
            return bytes([Status.BAD_COMMAND])
        if length:
            return bytes([Status.BAD_LENGTH])
        if command == Command.RUN:
            if self.w_ints is None or self.x_ints is None:
                return bytes([Status.BAD_STATE])
            values, indices = csb.w_fields_from_ints(cfg, self.w_ints)
            groups = len(self.w_ints) // cfg.cycles_per_row
            W = csb.unpack_w(cfg, values, indices, groups * cfg.pes)
            x = csb.unpack_x(cfg, csb.x_fields_from_ints(cfg, self.x_ints))
            self.y_ints = csb.pack_y(cfg, spmv(cfg, W, x))
            self.cycles = cfg.x_beats + len(self.w_ints) + 11
            return ok
        if command == Command.READ_Y:
            if self.y_ints is None:
                return bytes([Status.BAD_STATE])
            return (ok + len(self.y_ints).to_bytes(2, "little")
                    + ints_to_bytes(self.y_ints, cfg.y_beat_width))
        if command == Command.READ_CYCLES:
            return ok + self.cycles.to_bytes(4, "little")
        if command == Command.STATUS:
            flags = ((self.w_ints is not None) * Flags.W_LOADED
                     | (self.x_ints is not None) * Flags.X_LOADED
                     | (self.y_ints is not None) * Flags.Y_VALID)
            return ok + bytes([flags]) + len(self.w_ints or ()).to_bytes(2, "little")
        fields = BoardInfo.fields_of(cfg, self.max_w_beats)
        return ok + bytes([INFO_VERSION]) + b"".join(
            fields[name].to_bytes(2, "little") for name in INFO_FIELDS)


def bbs_matrix(rng, rows, cfg=CFG):
    W = rng.integers(-128, 128, size=(rows, cfg.cols))
    return prune_bbs(W, cfg.bank_size, cfg.nnz_per_bank)


def test_frame_layout():
    assert frame(Command.LOAD_X, 0x0102, b"\xaa") == b"X\x02\x01\xaa"
    assert frame(Command.RUN, 0) == b"R\x00\x00"
    with pytest.raises(ValueError, match="length must fit 16 bits"):
        frame(Command.LOAD_W, 1 << 16)
    with pytest.raises(ValueError, match="command must be a byte"):
        frame(256, 0)


def test_beats_as_bytes_round_trip():
    beats = [0, 1, (1 << 40) - 1, 0x12_3456_789A]
    data = ints_to_bytes(beats, 40)
    assert len(data) == 4 * 5 and data[5:10] == b"\x01\x00\x00\x00\x00"
    assert bytes_to_ints(data, 40) == beats
    assert beat_bytes(41) == 6 and beat_bytes(8) == 1
    with pytest.raises(LinkError, match="bits above its 39"):
        bytes_to_ints(data, 39)
    with pytest.raises(LinkError, match="not whole beats"):
        bytes_to_ints(data[:-1], 40)


def test_load_weights_sends_the_golden_csb_frame():
    rng = np.random.default_rng(1)
    W = bbs_matrix(rng, 5)
    sent = []

    class Recorder(BoardModel):
        def write(self, data):
            sent.append(bytes(data))
            super().write(data)

    host = Host(Recorder(CFG, MAX_W_BEATS), CFG)
    assert host.load_weights(W) == 6
    beats = csb.w_beat_ints(CFG, *csb.pack_w(CFG, W))
    assert sent == [frame(Command.LOAD_W, len(beats), ints_to_bytes(beats, CFG.w_beat_width))]


def test_spmv_through_the_model_board():
    rng = np.random.default_rng(2)
    board = BoardModel(CFG, MAX_W_BEATS)
    host = Host(board, None)
    info = host.info()
    assert host.config == CFG and info.max_w_beats == MAX_W_BEATS
    assert info.max_rows == MAX_W_BEATS // CFG.cycles_per_row * CFG.pes
    W = bbs_matrix(rng, 7)
    host.load_weights(W)
    for _ in range(3):
        x = rng.integers(-128, 128, size=CFG.cols)
        y, cycles = host.spmv(x)
        assert np.array_equal(y, spmv(CFG, W, x))
        assert cycles == CFG.x_beats + 8 + 11
    flags, w_beats = host.status()
    assert flags == Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID and w_beats == 8


def test_error_statuses_raise_board_error():
    host = Host(BoardModel(CFG, MAX_W_BEATS), CFG)
    with pytest.raises(BoardError, match=r"RUN: the board answered BAD_STATE \(3\)") as error:
        host.run()
    assert error.value.status == Status.BAD_STATE and error.value.command == Command.RUN
    rng = np.random.default_rng(3)
    with pytest.raises(BoardError, match="LOAD_W: the board answered BAD_LENGTH"):
        host.load_weights(bbs_matrix(rng, 2 * MAX_W_BEATS + 2))
    assert host.raw(frame(0x7E, 2, b"ab")) == Status.BAD_COMMAND
    with pytest.raises(BoardError, match="command 0x7e: the board answered BAD_COMMAND"):
        host.exchange(0x7E)


def test_check_names_every_differing_field():
    board = BoardModel(Config(lanes=2, pes=2, cols=32, bank_size=4, nnz_per_bank=1,
                              relu=True), MAX_W_BEATS)
    host = Host(board, CFG)
    with pytest.raises(LinkError, match=r"cols 32 \(host: 16\), .*relu 1 \(host: 0\)"):
        host.check()


def test_short_reply_is_a_link_error():
    class Silent:
        def write(self, data):
            pass

        def read(self, count):
            return b""

    with pytest.raises(LinkError, match="expected 1 bytes from the board, got 0"):
        Host(Silent(), CFG).run()


def test_read_y_needs_rows_and_matching_count():
    host = Host(BoardModel(CFG, MAX_W_BEATS), CFG)
    with pytest.raises(LinkError, match="rows unknown"):
        host.read_y()
    rng = np.random.default_rng(4)
    host.load_weights(bbs_matrix(rng, 4))
    host.load_x(rng.integers(-128, 128, size=CFG.cols))
    host.run()
    with pytest.raises(LinkError, match="the board holds 2 y beats; 6 rows need 3"):
        host.read_y(6)
    assert host.read_y().shape == (4,)  # the link stayed in step


def test_unstructured_config_is_refused():
    with pytest.raises(ValueError, match=r"rows have a fixed length \(pattern .bbs.\), not "
                                         r"pattern .unstructured.$"):
        Host(BoardModel(CFG, MAX_W_BEATS), Config(lanes=2, pes=2, cols=16,
                                                  pattern="unstructured"))


def test_host_open_over_a_pseudo_terminal():
    """The pyserial path of :meth:`Host.open`: a pseudo-terminal whose other end is the
    Python board model, answering from a thread."""
    import os
    import select
    import threading

    controller, device = os.openpty()
    board = BoardModel(CFG, MAX_W_BEATS)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            ready, _, _ = select.select([controller], [], [], 0.05)
            if ready:
                board.write(os.read(controller, 4096))
                if board.replies:
                    os.write(controller, board.read(len(board.replies)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        host = Host.open(os.ttyname(device), baud=115200, timeout=2.0)
        assert host.config == CFG
        rng = np.random.default_rng(5)
        W = bbs_matrix(rng, 6)
        host.load_weights(W)
        x = rng.integers(-128, 128, size=CFG.cols)
        y, _ = host.spmv(x)
        assert np.array_equal(y, spmv(CFG, W, x))
        host.close()
    finally:
        stop.set()
        thread.join()
        os.close(controller)
        os.close(device)
