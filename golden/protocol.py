"""The board's serial protocol (DESIGN §10): commands, status codes, flags, the INFO fields.

The one definition both ends share: the board side (:mod:`bbsparse.hdl.host_link`) and the
host driver (:mod:`bbsparse.host`) import these constants from here, so neither depends on
the other. The frame layout, the command table and the meaning of each status are in DESIGN
§10 and the :mod:`bbsparse.host` docstring.

Two kinds of board speak it, told apart by the first byte of their INFO data:

- version 1 (:data:`INFO_VERSION`, :class:`BoardInfo`): a *single-matrix board*
  (``BoardTop``): the host loads a matrix with LOAD_W, then runs vectors against it;
- version 2 (:data:`INFO_VERSION_MODEL`, :class:`ModelInfo`): a *model board*
  (``ModelBoardTop``): every layer's weights are in ROM; the host sends layer 0's x and
  reads the last layer's y. LOAD_W is not a command of a model board: it is answered
  ``BAD_COMMAND`` and, as for any unknown command, its ``length`` counts bytes (the
  payload is skipped). LOAD_X takes exactly layer 0's ``x_beats``; RUN needs only x
  (``W_LOADED`` is always set, STATUS reports 0 ``w_beats``) and ends ``OK`` on the
  ``y_beats``-th y beat, the one with ``tlast``.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from .config import Config

__all__ = ["BoardInfo", "Command", "Flags", "INFO_FIELDS", "INFO_VERSION",
           "INFO_VERSION_MODEL", "MAX_LENGTH", "MODEL_INFO_FIELDS", "MODEL_INFO_SIGNED",
           "ModelInfo", "Status", "info_data_bytes"]


class Command(enum.IntEnum):
    LOAD_W = ord("W")
    LOAD_X = ord("X")
    RUN = ord("R")
    READ_Y = ord("Y")
    READ_CYCLES = ord("C")
    STATUS = ord("S")
    INFO = ord("I")


class Status(enum.IntEnum):
    OK = 0
    BAD_COMMAND = 1
    BAD_LENGTH = 2
    BAD_STATE = 3
    CORE_ERROR = 4
    TIMEOUT = 5


class Flags(enum.IntFlag):
    W_LOADED = 1 << 0
    X_LOADED = 1 << 1
    Y_VALID = 1 << 2
    CORE_ERROR = 1 << 3
    RX_OVERRUN = 1 << 4
    RX_FRAMING = 1 << 5


#: INFO reply of a single-matrix board: ``version:u8`` (1) then these fields, u16 each, in
#: this order.
INFO_VERSION = 1
INFO_FIELDS = ("lanes", "pes", "bank_size", "nnz_per_bank", "cols", "weight_width",
               "act_width", "acc_width", "out_width", "out_shift", "relu", "max_w_beats")
#: INFO reply of a model board: ``version:u8`` (2) then these fields, 2 bytes each, in this
#: order: u16, except :data:`MODEL_INFO_SIGNED` (i16, two's complement).
INFO_VERSION_MODEL = 2
MODEL_INFO_FIELDS = ("lanes", "pes", "bank_size", "nnz_per_bank", "act_width", "out_width",
                     "layers", "inputs", "outputs", "x_beats", "y_beats", "input_exponent",
                     "output_exponent")
MODEL_INFO_SIGNED = frozenset({"input_exponent", "output_exponent"})
#: Largest value of the u16 length field.
MAX_LENGTH = 0xFFFF


def info_data_bytes(version: int) -> int | None:
    """Bytes of INFO data after the version byte, for a version this protocol knows (else
    None: the reply's length is unknown)."""
    fields = {INFO_VERSION: INFO_FIELDS, INFO_VERSION_MODEL: MODEL_INFO_FIELDS}.get(version)
    return None if fields is None else 2 * len(fields)


@dataclass(frozen=True)
class BoardInfo:
    """What INFO reports: the core's configuration and the weight memory's size."""
    config: Config
    max_w_beats: int

    @property
    def max_rows(self) -> int:
        """Rows of a full-width matrix the weight memory holds."""
        return self.max_w_beats // self.config.cycles_per_row * self.config.pes

    @staticmethod
    def fields_of(config: Config, max_w_beats: int) -> dict[str, int]:
        """The INFO fields for `config` (what the board sends)."""
        values = {name: int(getattr(config, name)) for name in INFO_FIELDS[:-1]}
        return {**values, "max_w_beats": max_w_beats}

    @classmethod
    def from_fields(cls, fields: dict[str, int]) -> BoardInfo:
        values = dict(fields)
        max_w_beats = values.pop("max_w_beats")
        values["relu"] = bool(values["relu"])
        return cls(Config(**values), max_w_beats)


@dataclass(frozen=True)
class ModelInfo:
    """What a model board's INFO reports (version 2): the shared core's shape, the widths of
    x and y, the model's size and beat counts, and the power-of-two scales of its integer
    input and output (``x_float = x_int * 2**input_exponent``, ``y_float = y_int *
    2**output_exponent``).

    An x frame is layer 0's: ``inputs`` values of ``act_width`` bits, zero-padded to whole
    banks, lane-transposed (DESIGN §3-4; :meth:`x_config` packs it), ``x_beats`` beats of
    ``lanes * act_width`` bits. A result is ``y_beats`` beats of ``pes * out_width`` bits,
    element ``p`` of beat ``g`` being output ``g * pes + p`` (signed; the padding outputs of
    the last beat are dropped).
    """
    lanes: int
    pes: int
    bank_size: int
    nnz_per_bank: int
    act_width: int
    out_width: int
    layers: int
    inputs: int
    outputs: int
    x_beats: int
    y_beats: int
    input_exponent: int
    output_exponent: int

    def __post_init__(self):
        for name in MODEL_INFO_FIELDS:
            value = getattr(self, name)
            low, high = (-(1 << 15), (1 << 15) - 1) if name in MODEL_INFO_SIGNED \
                else (0, MAX_LENGTH)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                kind = "i16" if name in MODEL_INFO_SIGNED else "u16"
                raise ValueError(f"INFO field {name} must be an integer that fits {kind} "
                                 f"({low}..{high}), not {value!r}")

    @classmethod
    def of_model(cls, model, *, input_exponent: int, output_exponent: int) -> ModelInfo:
        """The INFO of a board holding `model` (a :class:`~bbsparse.golden.model.
        IntegerModel`) with these scales."""
        c = model.config
        last = model.layer_config(len(model.layers) - 1)
        return cls(lanes=c.lanes, pes=c.pes, bank_size=c.bank_size,
                   nnz_per_bank=c.nnz_per_bank, act_width=c.act_width,
                   out_width=model.out_width, layers=len(model.layers), inputs=model.inputs,
                   outputs=model.outputs, x_beats=model.layer_config(0).x_beats,
                   y_beats=last.row_groups(model.outputs), input_exponent=input_exponent,
                   output_exponent=output_exponent)

    def fields(self) -> dict[str, int]:
        return asdict(self)

    def to_bytes(self) -> bytes:
        """The INFO reply's data (after the status byte): the version, then the fields."""
        return bytes([INFO_VERSION_MODEL]) + b"".join(
            getattr(self, name).to_bytes(2, "little", signed=name in MODEL_INFO_SIGNED)
            for name in MODEL_INFO_FIELDS)

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelInfo:
        """The fields of an INFO reply's data after its version byte."""
        if len(data) != 2 * len(MODEL_INFO_FIELDS):
            raise ValueError(f"model INFO data is {2 * len(MODEL_INFO_FIELDS)} bytes, not "
                             f"{len(data)}")
        return cls(**{name: int.from_bytes(data[2 * i:2 * i + 2], "little",
                                           signed=name in MODEL_INFO_SIGNED)
                      for i, name in enumerate(MODEL_INFO_FIELDS)})

    @property
    def x_beat_width(self) -> int:
        return self.lanes * self.act_width

    @property
    def y_beat_width(self) -> int:
        return self.pes * self.out_width

    def x_config(self) -> Config:
        """A configuration that packs layer 0's x frame with the golden packer
        (``csb.pack_x`` / ``csb.x_beat_ints``): the core's lanes and banks, ``cols`` the
        inputs rounded up to a whole bank."""
        cols = -(-self.inputs // self.bank_size) * self.bank_size
        return Config(lanes=self.lanes, pes=self.pes, bank_size=self.bank_size,
                      nnz_per_bank=self.nnz_per_bank, cols=cols, act_width=self.act_width)
