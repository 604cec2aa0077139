"""The host side of the board's serial link: the framed protocol, and a driver that speaks it.

The board top (:mod:`bbsparse.hdl.board`) holds the core, an on-chip weight memory, an x
buffer, a y buffer and a UART (8N1). The host sends *requests* and reads one *reply* to
each; it never sends a request before the reply to the previous one has arrived.

Request: ``command:u8, length:u16, payload``. Reply: ``status:u8``, then data only if the
status is ``OK``. Multi-byte fields and beats are little-endian; a beat of ``n`` bits
travels as ``ceil(n/8)`` bytes, padded with zero bits at the top.

========  ===========  ============================  ==================================
command   length       payload                       reply data (after status OK)
========  ===========  ============================  ==================================
``W``     w beats (1)  the CSB w frame (DESIGN §4)   —
``X``     ``x_beats``  the x frame (DESIGN §3-4)     —
``R``     0            —                             — (sent when the run has ended)
``Y``     0            —                             ``count:u16``, ``count`` y beats
``C``     0            —                             ``cycles:u32``
``S``     0            —                             ``flags:u8``, ``w_beats:u16``
``I``     0            —                             ``version:u8``, :data:`INFO_FIELDS`
                                                     (u16 each)
========  ===========  ============================  ==================================

(1) LOAD_W: 1 to ``max_w_beats`` beats, a whole number of row groups (a multiple of
``cycles_per_row``). W is LOAD_W, X LOAD_X, R RUN, Y READ_Y, C READ_CYCLES, S STATUS, I INFO.

``length`` counts beats for LOAD_W and LOAD_X and bytes for every other command, so that the
board can always skip a frame's payload, even for a command it does not know, and stays in
step with the host after any error. The weights stay on chip: one LOAD_W, then any number of
LOAD_X, RUN, READ_Y. RUN streams the stored x and w frames to the core at one beat a cycle
(the core is reset first, so each run stands alone), keeps the y beats, and counts the
cycles from the first x beat the core accepts to the last y beat, inclusive (the figure
``bbsparse spmv`` reports). A LOAD_W or LOAD_X frame forgets the stored matrix or vector as
soon as its command byte arrives; only a complete, correct frame makes it valid again.

Status codes (:class:`Status`): ``OK`` 0; ``BAD_COMMAND`` 1 (unknown command; its payload,
``length`` bytes, was skipped); ``BAD_LENGTH`` 2 (a length the command does not allow: the
payload was still read, and dropped); ``BAD_STATE`` 3 (RUN without weights or x, READ_Y
without a finished run); ``CORE_ERROR`` 4 (the core's ``error`` rose, or it sent a wrong
number of y beats); ``TIMEOUT`` 5 (the host stopped in the middle of a frame, or a run made
no progress, for ``timeout_cycles``: the partial frame is dropped, so a host that lost
step waits that long and starts again).

STATUS flags (:class:`Flags`): weights loaded, x loaded, results valid, the core's ``error``
seen in the last run, a received byte overrun, a UART framing error (the last two sticky).

**Model boards.** A board built for a whole compiled model (``ModelBoardTop``: every
layer's weights in ROM) speaks the same protocol with one difference, the weight path:
LOAD_W is not one of its commands (``BAD_COMMAND``; its ``length`` counts bytes, as any
unknown command's), LOAD_X takes layer 0's x frame, RUN needs only x, STATUS always has
``W_LOADED`` (and 0 ``w_beats``), READ_Y returns the last layer's ``y_beats`` beats of
``pes * out_width`` bits. INFO tells the two kinds apart by its version byte: 1 for a
single-matrix board (:class:`BoardInfo`), 2 for a model board (:class:`ModelInfo`: the
core's shape, the model's sizes and beat counts, and the power-of-two scales
``input_exponent`` and ``output_exponent``, signed). :class:`ModelHost` and
:class:`AsyncModelHost` talk to a model board (``infer(x_int) -> (y_int, cycles)``);
:class:`Host` refuses one, and :class:`ModelHost` a single-matrix board, with a
:class:`LinkError`.

The driver is written once, without I/O (each operation of :class:`Protocol` and
:class:`ModelProtocol` is a generator that yields :class:`Write` and :class:`Read`
requests), and run by :class:`Host` / :class:`ModelHost` over a blocking byte transport
(pyserial, :meth:`Host.open`, :meth:`ModelHost.open`) or by :class:`AsyncHost` /
:class:`AsyncModelHost` over an async one (the cocotb testbench's UART model): the
testbenches exercise this very code.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .golden import csb
from .golden.config import Config
from .golden.protocol import (
    INFO_FIELDS,
    INFO_VERSION,
    INFO_VERSION_MODEL,
    MAX_LENGTH,
    MODEL_INFO_FIELDS,
    BoardInfo,
    Command,
    Flags,
    ModelInfo,
    Status,
    info_data_bytes,
)

__all__ = [
    "AsyncHost",
    "AsyncModelHost",
    "BoardError",
    "BoardInfo",
    "Command",
    "Flags",
    "Host",
    "INFO_FIELDS",
    "INFO_VERSION",
    "INFO_VERSION_MODEL",
    "LinkError",
    "MODEL_INFO_FIELDS",
    "ModelHost",
    "ModelInfo",
    "ModelProtocol",
    "Protocol",
    "Read",
    "Status",
    "Write",
    "beat_bytes",
    "frame",
    "ints_to_bytes",
    "bytes_to_ints",
]


class LinkError(RuntimeError):
    """The link misbehaved: a short or malformed reply, or a board that does not match."""


class BoardError(RuntimeError):
    """The board answered a request with an error status."""

    def __init__(self, command: int, status: int):
        self.command = command
        self.status = status
        try:
            command_name = Command(command).name
        except ValueError:
            command_name = f"command {command:#04x}"
        try:
            status_name = Status(status).name
        except ValueError:
            status_name = f"unknown status {status:#04x}"
        super().__init__(f"{command_name}: the board answered {status_name} ({status})")


def beat_bytes(bits: int) -> int:
    """Bytes that carry one beat of `bits` bits."""
    return -(-bits // 8)


def ints_to_bytes(ints, bits: int) -> bytes:
    """Beats (``tdata`` integers) as bytes, each beat ``beat_bytes(bits)`` little-endian."""
    size = beat_bytes(bits)
    return b"".join(int(value).to_bytes(size, "little") for value in ints)


def bytes_to_ints(data: bytes, bits: int) -> list[int]:
    """Inverse of :func:`ints_to_bytes`; a beat with bits at or above `bits` raises."""
    size = beat_bytes(bits)
    if len(data) % size:
        raise LinkError(f"{len(data)} bytes are not whole beats of {size} bytes")
    ints = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
    for beat, value in enumerate(ints):
        if value >> bits:
            raise LinkError(f"beat {beat} = {value:#x} has bits above its {bits}")
    return ints


def frame(command: int, length: int, payload: bytes = b"") -> bytes:
    """One request: ``command:u8, length:u16 little-endian, payload``."""
    if not 0 <= command <= 0xFF:
        raise ValueError(f"command must be a byte, not {command!r}")
    if not 0 <= length <= MAX_LENGTH:
        raise ValueError(f"length must fit 16 bits (0..{MAX_LENGTH}), not {length}")
    return bytes([command]) + length.to_bytes(2, "little") + bytes(payload)


@dataclass(frozen=True)
class Write:
    """Send these bytes."""
    data: bytes


@dataclass(frozen=True)
class Read:
    """Receive exactly this many bytes."""
    count: int


Operation = Generator[Write | Read, bytes | None, object]


class _Requests:
    """The requests both kinds of board answer alike, without I/O."""

    def exchange(self, command: int, length: int = 0, payload: bytes = b"") -> Operation:
        """Send one request; read the status byte; raise :class:`BoardError` unless OK."""
        yield Write(frame(command, length, payload))
        status = (yield Read(1))[0]
        if status != Status.OK:
            raise BoardError(command, status)

    def raw(self, data: bytes) -> Operation:
        """Send `data` as it is (a frame, or a malformed one) and return the status byte."""
        yield Write(bytes(data))
        return (yield Read(1))[0]

    def info_data(self) -> Operation:
        """INFO: ``(version, data)``, the data being the fields' bytes after the version.
        A version this driver does not know raises :class:`LinkError` (its length being
        unknown, the rest of the reply is not read: reopen the link)."""
        yield from self.exchange(Command.INFO)
        version = (yield Read(1))[0]
        size = info_data_bytes(version)
        if size is None:
            raise LinkError(f"INFO version {version}: this driver speaks {INFO_VERSION} "
                            f"(single-matrix board) and {INFO_VERSION_MODEL} (model board); "
                            f"the rest of the reply was left unread")
        return version, (yield Read(size))

    def run(self) -> Operation:
        """RUN: returns when the board has all y beats."""
        yield from self.exchange(Command.RUN)

    def cycles(self) -> Operation:
        """READ_CYCLES: the last run's cycles, first x beat to last y beat, inclusive."""
        yield from self.exchange(Command.READ_CYCLES)
        return int.from_bytes((yield Read(4)), "little")

    def status(self) -> Operation:
        """STATUS: ``(Flags, w_beats)``."""
        yield from self.exchange(Command.STATUS)
        data = yield Read(3)
        return Flags(data[0]), int.from_bytes(data[1:3], "little")


class Protocol(_Requests):
    """The protocol of a single-matrix board without I/O. Each operation is a generator: it
    yields :class:`Write` (send, resume with ``None``) and :class:`Read` (resume with
    exactly that many bytes) and returns its result; an error status raises
    :class:`BoardError`.

    `config` is the core's configuration; without one, :meth:`info` supplies it (a host
    that has one checks it against the board with :meth:`check`).
    """

    def __init__(self, config: Config | None = None):
        if config is not None and not config.format.fixed_row_length:
            raise ValueError(f"the board link carries an engine whose rows have a fixed "
                             f"length (pattern 'bbs'), not pattern {config.pattern!r}")
        self.config = config
        self.rows: int | None = None  # rows of the last matrix loaded

    def _require_config(self) -> Config:
        if self.config is None:
            raise LinkError("no configuration: pass one, or ask the board with info() first")
        return self.config

    def info(self) -> Operation:
        """Ask the board what it holds; adopt its configuration if there is none yet."""
        version, data = yield from self.info_data()
        if version == INFO_VERSION_MODEL:
            raise LinkError("the board is a model board (INFO version 2: a compiled model, "
                            "its weights in ROM), not a single-matrix board: use ModelHost")
        fields = {name: int.from_bytes(data[2 * i:2 + 2 * i], "little")
                  for i, name in enumerate(INFO_FIELDS)}
        info = BoardInfo.from_fields(fields)
        if self.config is None:
            self.config = info.config
        return info

    def check(self) -> Operation:
        """INFO, and raise :class:`LinkError` naming every field where the board differs
        from this protocol's configuration."""
        config = self._require_config()
        info = yield from self.info()
        ours = BoardInfo.fields_of(config, info.max_w_beats)
        theirs = BoardInfo.fields_of(info.config, info.max_w_beats)
        wrong = [f"{name} {theirs[name]} (host: {ours[name]})" for name in ours
                 if ours[name] != theirs[name]]
        if wrong:
            raise LinkError("the board's core differs from the host's configuration: "
                            + ", ".join(wrong))
        return info

    def load_weights(self, W) -> Operation:
        """LOAD_W: the BBS matrix `W` ``(rows, cols_w)`` packed by the golden CSB packer."""
        config = self._require_config()
        values, indices = csb.pack_w(config, W)
        beats = csb.w_beat_ints(config, values, indices)
        if len(beats) > MAX_LENGTH:
            raise ValueError(f"{len(beats)} w beats do not fit one frame ({MAX_LENGTH})")
        yield from self.exchange(Command.LOAD_W, len(beats),
                                 ints_to_bytes(beats, config.w_beat_width))
        self.rows = int(np.asarray(W).shape[0])
        return len(beats)

    def load_x(self, x) -> Operation:
        """LOAD_X: one vector `x` ``(n,)``, ``n <= cols``."""
        config = self._require_config()
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"x must be one vector (n,), not shape {x.shape}")
        beats = csb.x_beat_ints(config, csb.pack_x(config, x))
        yield from self.exchange(Command.LOAD_X, len(beats),
                                 ints_to_bytes(beats, config.x_beat_width))

    def read_y(self, rows: int | None = None) -> Operation:
        """READ_Y: the results of the last run, ``(rows,)`` (default: the rows of the last
        matrix this protocol loaded)."""
        config = self._require_config()
        rows = self.rows if rows is None else rows
        if rows is None:
            raise LinkError("rows unknown: no matrix loaded through this host; pass rows")
        yield from self.exchange(Command.READ_Y)
        count = int.from_bytes((yield Read(2)), "little")
        if count != config.row_groups(rows):
            # Read them anyway so that the link stays in step, then complain.
            yield Read(count * beat_bytes(config.y_beat_width))
            raise LinkError(f"the board holds {count} y beats; {rows} rows need "
                            f"{config.row_groups(rows)}")
        data = yield Read(count * beat_bytes(config.y_beat_width))
        return csb.unpack_y(config, bytes_to_ints(data, config.y_beat_width), rows)

    def spmv(self, x) -> Operation:
        """LOAD_X, RUN, READ_Y with the stored weights: ``(y, cycles)``."""
        yield from self.load_x(x)
        yield from self.run()
        y = yield from self.read_y()
        cycles = yield from self.cycles()
        return y, cycles


class ModelProtocol(_Requests):
    """The protocol of a model board without I/O, as :class:`Protocol`: layer 0's x in,
    the last layer's y out, the weights in the board's ROM.

    `info` is what the board reported (:class:`ModelInfo`); without one, :meth:`info` asks
    the board before x can be packed.
    """

    def __init__(self, info: ModelInfo | None = None):
        self.model_info = info

    def _require_info(self) -> ModelInfo:
        if self.model_info is None:
            raise LinkError("the board's model is unknown: ask it with info() first")
        return self.model_info

    def info(self) -> Operation:
        """INFO: the model the board holds (:class:`ModelInfo`), which this protocol adopts;
        a single-matrix board raises :class:`LinkError`."""
        version, data = yield from self.info_data()
        if version != INFO_VERSION_MODEL:
            raise LinkError(f"the board is a single-matrix board (INFO version {version}: "
                            f"the host loads its weights), not a model board: use Host")
        self.model_info = ModelInfo.from_bytes(data)
        return self.model_info

    def load_x(self, x) -> Operation:
        """LOAD_X: one integer input vector `x` ``(inputs,)``, each value within
        ``act_width`` signed bits (the model's quantized input)."""
        info = self._require_info()
        x = np.asarray(x)
        if x.shape != (info.inputs,):
            raise ValueError(f"x must be one vector of the model's {info.inputs} inputs, "
                             f"not shape {x.shape}")
        config = info.x_config()
        beats = csb.x_beat_ints(config, csb.pack_x(config, x))
        if len(beats) != info.x_beats:
            raise LinkError(f"x packs into {len(beats)} beats; the board takes "
                            f"{info.x_beats}")
        yield from self.exchange(Command.LOAD_X, len(beats),
                                 ints_to_bytes(beats, info.x_beat_width))

    def read_y(self) -> Operation:
        """READ_Y: the model's integer outputs of the last run, ``(outputs,)`` int64."""
        info = self._require_info()
        yield from self.exchange(Command.READ_Y)
        count = int.from_bytes((yield Read(2)), "little")
        data = yield Read(count * beat_bytes(info.y_beat_width))
        if count != info.y_beats:
            raise LinkError(f"the board holds {count} y beats; the model gives "
                            f"{info.y_beats}")
        beats = bytes_to_ints(data, info.y_beat_width)
        fields = csb.unpack_fields(beats, info.pes, info.out_width, signed=True)
        return np.asarray(fields, dtype=np.int64).reshape(-1)[:info.outputs]

    def infer(self, x) -> Operation:
        """One inference: LOAD_X, RUN, READ_Y, READ_CYCLES; ``(y, cycles)``."""
        yield from self.load_x(x)
        yield from self.run()
        y = yield from self.read_y()
        cycles = yield from self.cycles()
        return y, cycles


def _drive(operation: Operation, transport):
    """Run `operation` over a blocking transport (``write(bytes)``, ``read(n) -> bytes``)."""
    reply = None
    try:
        while True:
            step = operation.send(reply)
            if isinstance(step, Write):
                transport.write(step.data)
                reply = None
            else:
                reply = bytes(transport.read(step.count))
                if len(reply) != step.count:
                    raise LinkError(f"expected {step.count} bytes from the board, got "
                                    f"{len(reply)} before the timeout")
    except StopIteration as done:
        return done.value


async def _drive_async(operation: Operation, transport):
    """As :func:`_drive` over an async transport (``await write``, ``await read(n)``)."""
    reply = None
    try:
        while True:
            step = operation.send(reply)
            if isinstance(step, Write):
                await transport.write(step.data)
                reply = None
            else:
                reply = bytes(await transport.read(step.count))
                if len(reply) != step.count:
                    raise LinkError(f"expected {step.count} bytes from the board, got "
                                    f"{len(reply)}")
    except StopIteration as done:
        return done.value


def _op(protocol_class, name: str):
    """A driver method that runs the operation `name` of the driver's protocol."""
    def method(self, *args, **kwargs):
        return self._run(getattr(self.protocol, name)(*args, **kwargs))
    method.__name__ = name
    method.__doc__ = getattr(protocol_class, name).__doc__
    return method


class _Driver:
    """A transport, and the protocol whose operations ``self._run`` carries out over it."""

    def _run(self, operation):
        raise NotImplementedError

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Blocking(_Driver):
    def _run(self, operation):
        return _drive(operation, self.transport)


class _Awaited(_Driver):
    def _run(self, operation):
        return _drive_async(operation, self.transport)


def _open_serial(port: str, baud: int, timeout: float):
    import serial

    link = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                         timeout=timeout)
    link.reset_input_buffer()
    return link


class _Methods(_Driver):
    """The operations of :class:`Protocol`."""

    def __init__(self, transport, config: Config | None = None):
        self.transport = transport
        self.protocol = Protocol(config)

    @property
    def config(self) -> Config | None:
        return self.protocol.config

    info = _op(Protocol, "info")
    check = _op(Protocol, "check")
    raw = _op(Protocol, "raw")
    exchange = _op(Protocol, "exchange")
    load_weights = _op(Protocol, "load_weights")
    load_x = _op(Protocol, "load_x")
    run = _op(Protocol, "run")
    read_y = _op(Protocol, "read_y")
    cycles = _op(Protocol, "cycles")
    status = _op(Protocol, "status")
    spmv = _op(Protocol, "spmv")


class Host(_Blocking, _Methods):
    """The driver of a single-matrix board over a blocking transport: anything with
    ``write(bytes)`` and ``read(n) -> bytes`` (``read`` may return fewer bytes on a
    timeout), such as a ``serial.Serial``. :meth:`open` opens a serial port.

    >>> host = Host.open("/dev/ttyUSB1", baud=115200)   # doctest: +SKIP
    >>> host.load_weights(W); y, cycles = host.spmv(x)  # doctest: +SKIP
    """

    @classmethod
    def open(cls, port: str, baud: int = 115200, config: Config | None = None,
             timeout: float = 2.0) -> Host:
        """Open `port` (pyserial, 8N1) and check the board: with `config`, that it matches;
        without, adopt the board's. A model board raises :class:`LinkError`."""
        host = cls(_open_serial(port, baud, timeout), config)
        try:
            if config is None:
                host.info()
            else:
                host.check()
        except BaseException:
            host.close()
            raise
        return host


class AsyncHost(_Awaited, _Methods):
    """The driver over an async transport (``await write(bytes)``, ``await read(n)``): the
    same operations as :class:`Host`, awaited."""


class _ModelMethods(_Driver):
    """The operations of :class:`ModelProtocol`."""

    def __init__(self, transport, info: ModelInfo | None = None):
        self.transport = transport
        self.protocol = ModelProtocol(info)

    @property
    def model_info(self) -> ModelInfo | None:
        """What the board's INFO reported (after :meth:`info`, which :meth:`ModelHost.open`
        calls)."""
        return self.protocol.model_info

    info = _op(ModelProtocol, "info")
    raw = _op(ModelProtocol, "raw")
    exchange = _op(ModelProtocol, "exchange")
    load_x = _op(ModelProtocol, "load_x")
    run = _op(ModelProtocol, "run")
    read_y = _op(ModelProtocol, "read_y")
    cycles = _op(ModelProtocol, "cycles")
    status = _op(ModelProtocol, "status")
    infer = _op(ModelProtocol, "infer")


class ModelHost(_Blocking, _ModelMethods):
    """The driver of a model board over a blocking transport (as :class:`Host`).

    >>> with ModelHost.open("/dev/ttyUSB1", baud=115200) as host:  # doctest: +SKIP
    ...     y_int, cycles = host.infer(x_int)
    """

    @classmethod
    def open(cls, port: str, baud: int = 115200, timeout: float = 2.0) -> ModelHost:
        """Open `port` (pyserial, 8N1) and ask the board's INFO; a single-matrix board (INFO
        version 1) raises :class:`LinkError`."""
        host = cls(_open_serial(port, baud, timeout))
        try:
            host.info()
        except BaseException:
            host.close()
            raise
        return host


class AsyncModelHost(_Awaited, _ModelMethods):
    """The driver of a model board over an async transport: the operations of
    :class:`ModelHost`, awaited."""
