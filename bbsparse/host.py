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

The driver is written once, without I/O (each operation of :class:`Protocol` is a generator
that yields :class:`Write` and :class:`Read` requests), and run by :class:`Host` over a
blocking byte transport (pyserial, :meth:`Host.open`) or by :class:`AsyncHost` over an
async one (the cocotb testbench's UART model): the testbench exercises this very code.
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
    MAX_LENGTH,
    BoardInfo,
    Command,
    Flags,
    Status,
)

__all__ = [
    "AsyncHost",
    "BoardError",
    "BoardInfo",
    "Command",
    "Flags",
    "Host",
    "INFO_FIELDS",
    "INFO_VERSION",
    "LinkError",
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


class Protocol:
    """The protocol without I/O. Each operation is a generator: it yields :class:`Write`
    (send, resume with ``None``) and :class:`Read` (resume with exactly that many bytes)
    and returns its result; an error status raises :class:`BoardError`.

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

    def info(self) -> Operation:
        """Ask the board what it holds; adopt its configuration if there is none yet."""
        yield from self.exchange(Command.INFO)
        data = yield Read(1 + 2 * len(INFO_FIELDS))
        if data[0] != INFO_VERSION:
            raise LinkError(f"INFO version {data[0]}, this driver speaks {INFO_VERSION}")
        fields = {name: int.from_bytes(data[1 + 2 * i:3 + 2 * i], "little")
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

    def run(self) -> Operation:
        """RUN: returns when the board has all y beats."""
        yield from self.exchange(Command.RUN)

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

    def cycles(self) -> Operation:
        """READ_CYCLES: the last run's cycles, first x beat to last y beat, inclusive."""
        yield from self.exchange(Command.READ_CYCLES)
        return int.from_bytes((yield Read(4)), "little")

    def status(self) -> Operation:
        """STATUS: ``(Flags, w_beats)``."""
        yield from self.exchange(Command.STATUS)
        data = yield Read(3)
        return Flags(data[0]), int.from_bytes(data[1:3], "little")

    def spmv(self, x) -> Operation:
        """LOAD_X, RUN, READ_Y with the stored weights: ``(y, cycles)``."""
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


class _Methods:
    """The operations of :class:`Protocol`, each run by ``self._run``."""

    _run = None  # set by the subclass

    def __init__(self, transport, config: Config | None = None):
        self.transport = transport
        self.protocol = Protocol(config)

    @property
    def config(self) -> Config | None:
        return self.protocol.config

    def _op(name):  # noqa: N805 - builds methods at class creation
        def method(self, *args, **kwargs):
            return self._run(getattr(self.protocol, name)(*args, **kwargs))
        method.__name__ = name
        method.__doc__ = getattr(Protocol, name).__doc__
        return method

    info = _op("info")
    check = _op("check")
    raw = _op("raw")
    exchange = _op("exchange")
    load_weights = _op("load_weights")
    load_x = _op("load_x")
    run = _op("run")
    read_y = _op("read_y")
    cycles = _op("cycles")
    status = _op("status")
    spmv = _op("spmv")
    del _op


class Host(_Methods):
    """The driver over a blocking transport: anything with ``write(bytes)`` and
    ``read(n) -> bytes`` (``read`` may return fewer bytes on a timeout), such as a
    ``serial.Serial``. :meth:`open` opens a serial port.

    >>> host = Host.open("/dev/ttyUSB1", baud=115200)   # doctest: +SKIP
    >>> host.load_weights(W); y, cycles = host.spmv(x)  # doctest: +SKIP
    """

    def _run(self, operation):
        return _drive(operation, self.transport)

    @classmethod
    def open(cls, port: str, baud: int = 115200, config: Config | None = None,
             timeout: float = 2.0) -> Host:
        """Open `port` (pyserial, 8N1) and check the board: with `config`, that it matches;
        without, adopt the board's."""
        import serial

        link = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                             timeout=timeout)
        link.reset_input_buffer()
        host = cls(link, config)
        if config is None:
            host.info()
        else:
            host.check()
        return host

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()


class AsyncHost(_Methods):
    """The driver over an async transport (``await write(bytes)``, ``await read(n)``): the
    same operations as :class:`Host`, awaited."""

    def _run(self, operation):
        return _drive_async(operation, self.transport)
