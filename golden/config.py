"""The configuration of a bbsparse core: every parameter of DESIGN §2, validated.

A :class:`Config` is frozen and complete: defaults (``acc_width``, ``out_width``) are filled
in when it is built, so ``Config(...).to_dict()`` is exactly what the generator used.
Every invalid combination raises :class:`ConfigError` naming the parameter, its value and
the rule; nothing is clamped.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .arith import clog2
from .formats import FORMATS, format_of

__all__ = ["Config", "ConfigError", "load_config", "parse_overrides"]


class ConfigError(ValueError):
    """A configuration that cannot be built; the message names parameter, value and rule."""


@dataclass(frozen=True)
class Config:
    # The BBS pattern and the row length the core is generated for (DESIGN §1-2).
    lanes: int = 8
    pes: int = 2
    bank_size: int = 8
    nnz_per_bank: int = 1
    cols: int = 1024
    # Signed two's-complement widths.
    weight_width: int = 8
    act_width: int = 8
    # None means "the default of DESIGN §2"; __post_init__ replaces it by the value.
    acc_width: int | None = None
    out_width: int | None = None
    out_shift: int = 0
    relu: bool = False
    # Micro-architecture (not part of the wire contract): adder-tree levels between two
    # pipeline registers. 1 registers every level (best Fmax), larger values trade Fmax
    # for latency.
    tree_levels_per_stage: int = 1
    # Which engine, and so which wire format (DESIGN §9): a name of golden.formats.FORMATS
    # ("bbs": the bank-balanced core of DESIGN §3-4; "unstructured": the same PEs behind
    # the crossbar gather).
    pattern: str = "bbs"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "relu":
                if not isinstance(value, bool):
                    raise ConfigError(f"relu must be a boolean (true or false), not {value!r}")
                continue
            if field.name == "pattern":
                if value not in FORMATS:
                    raise ConfigError(
                        f"pattern must be one of {', '.join(map(repr, FORMATS))}, not {value!r}")
                continue
            if value is None and field.name in ("acc_width", "out_width"):
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{field.name} must be an integer, not {value!r}")

        for name in ("lanes", "pes", "bank_size", "nnz_per_bank", "cols", "tree_levels_per_stage"):
            self._require(name, getattr(self, name) >= 1, "must be at least 1")
        for name in ("weight_width", "act_width"):
            self._require(name, getattr(self, name) >= 1, "must be at least 1 bit")
        self._require(
            "nnz_per_bank",
            self.nnz_per_bank <= self.bank_size,
            f"must not exceed bank_size ({self.bank_size})",
        )
        self._require(
            "cols",
            self.cols % self.bank_size == 0,
            f"must be a multiple of bank_size ({self.bank_size})",
        )

        for name, ok, rule in self.format.check(self):
            self._require(name, ok, rule)
        if self.acc_width is None:
            object.__setattr__(self, "acc_width", self.default_acc_width)
        product = self.weight_width + self.act_width
        self._require(
            "acc_width",
            self.acc_width >= product,
            f"must hold one product: at least weight_width + act_width = {product}",
        )
        if self.out_width is None:
            object.__setattr__(self, "out_width", self.acc_width)
        self._require("out_width", self.out_width >= 1, "must be at least 1 bit")
        self._require(
            "out_width",
            self.out_width <= self.acc_width,
            f"must not exceed acc_width ({self.acc_width})",
        )
        self._require("out_shift", self.out_shift >= 0, "must not be negative")
        self._require(
            "out_shift",
            self.out_shift < self.acc_width,
            f"must be less than acc_width ({self.acc_width})",
        )

    def _require(self, name: str, ok: bool, rule: str):
        if not ok:
            raise ConfigError(f"{name} {rule}, not {getattr(self, name)!r}")

    # -- derived figures (DESIGN §2-4) ---------------------------------------------------

    @property
    def format(self):
        """The wire format of the engine this configuration selects (DESIGN §9)."""
        return format_of(self)

    @property
    def banks_per_row(self) -> int:
        return self.cols // self.bank_size

    @property
    def nnz_per_row(self) -> int:
        return self.banks_per_row * self.nnz_per_bank

    @property
    def default_acc_width(self) -> int:
        """weight_width + act_width + ceil(log2(nonzeros a row can hold)): no row can
        overflow. A BBS row holds nnz_per_row; an unstructured row up to cols."""
        return self.weight_width + self.act_width + clog2(self.format.accumulator_terms(self))

    @property
    def rounds(self) -> int:
        """Passes of the lanes over a row's banks: ceil(banks_per_row / lanes)."""
        return -(-self.banks_per_row // self.lanes)

    @property
    def padded_banks_per_row(self) -> int:
        """Banks per row including the zero banks that pad it to a multiple of lanes."""
        return self.rounds * self.lanes

    @property
    def cycles_per_row(self) -> int:
        return self.rounds * self.nnz_per_bank

    @property
    def x_beats(self) -> int:
        """Beats of one x frame: lane-transposed banks for BBS (DESIGN §3); for the
        unstructured engine x in order, `lanes` activations a beat."""
        return self.format.x_beats(self)

    @property
    def index_width(self) -> int:
        """Bits of a w entry's index: in-bank (BBS) or column (unstructured)."""
        return self.format.index_width(self)

    @property
    def w_entry_width(self) -> int:
        return self.weight_width + self.index_width

    @property
    def x_beat_width(self) -> int:
        return self.lanes * self.act_width

    @property
    def w_beat_width(self) -> int:
        """Entries of every lane of every PE; the unstructured stream adds a group-end bit
        above them."""
        return self.pes * self.lanes * self.w_entry_width + self.format.w_flag_bits(self)

    @property
    def y_beat_width(self) -> int:
        return self.pes * self.out_width

    @property
    def multipliers(self) -> int:
        return self.pes * self.lanes

    @property
    def density(self) -> float:
        return self.nnz_per_bank / self.bank_size

    @property
    def ideal_speedup(self) -> float:
        """Speedup over dense on the same array if every slot is useful: bank_size / nnz."""
        return self.bank_size / self.nnz_per_bank

    def row_groups(self, rows: int) -> int:
        """Number of y beats for a matrix of `rows` rows: ceil(rows / pes)."""
        if rows < 1:
            raise ConfigError(f"rows must be at least 1, not {rows!r}")
        return -(-rows // self.pes)

    def to_dict(self) -> dict:
        """Every parameter with its final value (defaults filled in)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The configuration as a TOML file that :func:`load_config` reads back equal."""
        lines = []
        for name, value in self.to_dict().items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = json.dumps(value)  # a JSON string is a TOML basic string
            else:
                text = str(value)
            lines.append(f"{name} = {text}")
        return "\n".join(lines) + "\n"


PARAMETERS = tuple(f.name for f in dataclasses.fields(Config))


def parse_overrides(items) -> dict:
    """Parse ``name=value`` strings (the ``--set`` option) into a dict.

    Values are read as TOML values (``8``, ``true``, ``"text"``); a bare word that is not
    valid TOML is taken as a string.
    """
    result = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set takes name=value, not {item!r}")
        if name not in PARAMETERS:
            raise ConfigError(
                f"unknown parameter {name!r} in --set; known: {', '.join(PARAMETERS)}"
            )
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        result[name] = value
    return result


def load_config(path: str | Path | None = None, overrides=()) -> Config:
    """Build a configuration from a TOML file (optional) and ``name=value`` overrides."""
    params: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {str(path)!r}: {exc.strerror}") from None
        try:
            params = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ConfigError(
                f"{path}: unknown parameter {unknown[0]!r}; known: {', '.join(PARAMETERS)}"
            )
    params.update(parse_overrides(overrides))
    return Config(**params)
