"""The host driver (:mod:`bbsparse.host`) without hardware: its framing, and its operations
over an in-memory transport answered by small Python models of the board's link, for a
single-matrix board and for a model board.

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
    INFO_VERSION_MODEL,
    MODEL_INFO_FIELDS,
    BoardError,
    BoardInfo,
    Command,
    Flags,
    Host,
    LinkError,
    ModelHost,
    ModelInfo,
    Status,
    beat_bytes,
    bytes_to_ints,
    frame,
    ints_to_bytes,
)
from tests.test_hdl_model import random_model

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


# -- model boards ----------------------------------------------------------------------------

MODEL = random_model(11, sizes=(10, 7, 5), lanes=2, pes=2, bank_size=4, nnz=1)
EXPONENTS = dict(input_exponent=-6, output_exponent=-13)


class ModelBoard(BoardModel):
    """A model board's side of the protocol in Python (INFO version 2, no LOAD_W, y from
    the golden forward pass), with the framing of :class:`BoardModel`."""

    def __init__(self, model, *, version: int = INFO_VERSION_MODEL, **exponents):
        self.model = model
        self.info = ModelInfo.of_model(model, **exponents)
        self.version = version
        super().__init__(self.info.x_config(), 0)

    def _step(self) -> bool:
        if len(self.pending) >= 1 and self.pending[0] == Command.LOAD_W:
            # Not a command here: length counts bytes, as any unknown command's.
            length = int.from_bytes(self.pending[1:3], "little")
            if len(self.pending) < 3 + length:
                return False
            del self.pending[:3 + length]
            self.replies += bytes([Status.BAD_COMMAND])
            return True
        return super()._step()

    def _answer(self, command: int, length: int, payload: bytes) -> bytes:
        ok = bytes([Status.OK])
        info = self.info
        if command == Command.RUN and not length:
            if self.x_ints is None:
                return bytes([Status.BAD_STATE])
            config = info.x_config()
            x = csb.unpack_x(config, csb.x_fields_from_ints(config, self.x_ints), info.inputs)
            y = np.zeros(info.y_beats * info.pes, dtype=np.int64)
            y[:info.outputs] = self.model.forward(x)
            self.y_ints = csb.pack_fields(y.reshape(-1, info.pes), info.out_width)
            self.cycles = 321
            return ok
        if command == Command.READ_Y and not length and self.y_ints is not None:
            return (ok + len(self.y_ints).to_bytes(2, "little")
                    + ints_to_bytes(self.y_ints, info.y_beat_width))
        if command == Command.STATUS and not length:
            flags = (Flags.W_LOADED | (self.x_ints is not None) * Flags.X_LOADED
                     | (self.y_ints is not None) * Flags.Y_VALID)
            return ok + bytes([flags]) + bytes(2)
        if command == Command.INFO and not length:
            return ok + bytes([self.version]) + info.to_bytes()[1:]
        return super()._answer(command, length, payload)


def test_model_host_infers_through_the_model_board():
    rng = np.random.default_rng(21)
    host = ModelHost(ModelBoard(MODEL, **EXPONENTS))
    with pytest.raises(LinkError, match=r"model is unknown: ask it with info\(\) first"):
        host.load_x(np.zeros(MODEL.inputs, dtype=np.int64))
    info = host.info()
    assert host.model_info == info == ModelInfo.of_model(MODEL, **EXPONENTS)
    assert (info.input_exponent, info.output_exponent) == (-6, -13)
    for kind in ("random", "min", "max"):
        x = {"random": rng.integers(-128, 128, MODEL.inputs),
             "min": np.full(MODEL.inputs, -128), "max": np.full(MODEL.inputs, 127)}[kind]
        y, cycles = host.infer(x)
        assert y.dtype == np.int64 and np.array_equal(y, MODEL.forward(x)), kind
        assert cycles == 321
    assert host.status() == (Flags.W_LOADED | Flags.X_LOADED | Flags.Y_VALID, 0)
    assert host.raw(frame(Command.LOAD_W, 3, b"abc")) == Status.BAD_COMMAND
    assert host.infer(x)[0].shape == (MODEL.outputs,)  # still in step


def test_model_host_refuses_bad_inputs():
    host = ModelHost(ModelBoard(MODEL, **EXPONENTS))
    host.info()
    with pytest.raises(ValueError, match=r"one vector of the model's 10 inputs, not shape "
                                         r"\(9,\)"):
        host.load_x(np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="act_width"):
        host.load_x(np.full(MODEL.inputs, 128))


def test_each_driver_refuses_the_other_kind_of_board():
    board = BoardModel(CFG, MAX_W_BEATS)
    with pytest.raises(LinkError, match=r"single-matrix board \(INFO version 1.*use Host"):
        ModelHost(board).info()
    assert Host(board).info().config == CFG  # the whole version-1 reply was read
    model_board = ModelBoard(MODEL, **EXPONENTS)
    with pytest.raises(LinkError, match=r"model board \(INFO version 2.*use ModelHost"):
        Host(model_board).info()
    assert ModelHost(model_board).info().layers == 2
    with pytest.raises(LinkError, match=r"INFO version 9: this driver speaks 1 .* and 2"):
        ModelHost(ModelBoard(MODEL, version=9, **EXPONENTS)).info()


def test_model_read_y_checks_the_beat_count():
    class Short(ModelBoard):
        def _answer(self, command, length, payload):
            reply = super()._answer(command, length, payload)
            if command == Command.READ_Y and reply[0] == Status.OK:
                beat = beat_bytes(self.info.y_beat_width)
                reply = reply[:1] + (len(self.y_ints) - 1).to_bytes(2, "little") \
                    + reply[3 + beat:]
            return reply

    board = Short(MODEL, **EXPONENTS)
    host = ModelHost(board)
    host.info()
    with pytest.raises(LinkError, match="the board holds 2 y beats; the model gives 3"):
        host.infer(np.zeros(MODEL.inputs, dtype=np.int64))
    assert not board.replies  # the beats were read all the same


def test_model_info_fields_are_checked():
    info = ModelInfo.of_model(MODEL, **EXPONENTS)
    assert ModelInfo.from_bytes(info.to_bytes()[1:]) == info
    assert list(info.fields()) == list(MODEL_INFO_FIELDS)
    with pytest.raises(ValueError, match=r"output_exponent must be an integer that fits i16 "
                                         r"\(-32768..32767\), not -40000"):
        ModelInfo.of_model(MODEL, input_exponent=0, output_exponent=-40000)
    with pytest.raises(ValueError, match=r"INFO field inputs must .* u16 \(0..65535\), "
                                         r"not -1"):
        ModelInfo(**{**info.fields(), "inputs": -1})
    with pytest.raises(ValueError, match="model INFO data is 26 bytes, not 25"):
        ModelInfo.from_bytes(bytes(25))


def _serve_over_a_pty(board):
    """A pseudo-terminal whose other end is `board`, answering from a thread; returns the
    device name and a function that stops it."""
    import os
    import select
    import threading

    controller, device = os.openpty()
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

    def close():
        stop.set()
        thread.join()
        os.close(controller)
        os.close(device)

    return os.ttyname(device), close


def test_model_host_open_over_a_pseudo_terminal():
    name, close = _serve_over_a_pty(ModelBoard(MODEL, **EXPONENTS))
    try:
        with ModelHost.open(name, baud=115200, timeout=2.0) as host:
            assert host.model_info.outputs == MODEL.outputs
            x = np.arange(MODEL.inputs) - 5
            y, _ = host.infer(x)
            assert np.array_equal(y, MODEL.forward(x))
        assert not host.transport.is_open
    finally:
        close()
    name, close = _serve_over_a_pty(BoardModel(CFG, MAX_W_BEATS))
    try:
        with pytest.raises(LinkError, match="single-matrix board"):
            ModelHost.open(name, baud=115200, timeout=2.0)
    finally:
        close()
