"""The board's serial protocol (DESIGN §10): commands, status codes, flags, the INFO fields.

The one definition both ends share: the board side (:mod:`bbsparse.hdl.host_link`) and the
host driver (:mod:`bbsparse.host`) import these constants from here, so neither depends on
the other. The frame layout, the command table and the meaning of each status are in DESIGN
§10 and the :mod:`bbsparse.host` docstring.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .config import Config

__all__ = ["BoardInfo", "Command", "Flags", "INFO_FIELDS", "INFO_VERSION", "MAX_LENGTH",
           "Status"]


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


#: INFO reply: ``version:u8`` then these fields, u16 each, in this order.
INFO_VERSION = 1
INFO_FIELDS = ("lanes", "pes", "bank_size", "nnz_per_bank", "cols", "weight_width",
               "act_width", "acc_width", "out_width", "out_shift", "relu", "max_w_beats")
#: Largest value of the u16 length field.
MAX_LENGTH = 0xFFFF



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
