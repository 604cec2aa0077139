"""The configuration of a bbsparse core: every parameter of DESIGN §2, validated.

A :class:`Config` is frozen and complete: defaults (``acc_width``, ``out_width``) are filled
in when it is built, so ``Config(...).to_dict()`` is exactly what the generator used.
Every invalid combination raises :class:`ConfigError` naming the parameter, its value and
the rule; nothing is clamped.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .arith import clog2
from .formats import FORMATS, format_of

__all__ = ["Config", "ConfigError", "LIMITS", "load_config", "parse_config", "parse_overrides"]

# Upper bounds (DESIGN §2.2): what the largest FPGAs could hold, so that a configuration that
# passes validation can be generated, simulated and fitted in bounded time and memory.
#: Multipliers (lanes x pes): more DSP blocks than the largest FPGAs have (about 12k).
MAX_MULTIPLIERS = 4096
#: Row length: 2**20 activations, which every PE keeps twice (two x buffers).
MAX_COLS = 1 << 20
#: Operand widths: a 64 x 64-bit product already spans 16 18-bit DSP blocks.
MAX_OPERAND_WIDTH = 64
#: Accumulator width: 64-bit operands and 2**20 products need 148 bits.
MAX_ACC_WIDTH = 256
#: Adder-tree levels per stage: 4096 lanes make a tree of 12 levels.
MAX_TREE_LEVELS_PER_STAGE = 16
#: Vector memories, every PE's two x buffers: about the on-chip RAM of the largest FPGAs.
MAX_VECTOR_MEMORY_BITS = 1 << 28
#: Product and operand registers: more than a few only adds latency.
MAX_PRODUCT_REGISTERS = 4
MAX_OPERAND_REGISTERS = 4
#: Broadcast registers: each is a cycle of latency and a copy of the broadcasts per PE.
MAX_BROADCAST_REGISTERS = 4
#: Result registers: each is a cycle of latency and a register per result bit.
MAX_RESULT_REGISTERS = 4
#: A configuration file larger than this is not a configuration.
MAX_CONFIG_BYTES = 1 << 20

#: Every bound above, by name (for the docs and the tests).
LIMITS = {
    "multipliers": MAX_MULTIPLIERS,
    "cols": MAX_COLS,
    "operand_width": MAX_OPERAND_WIDTH,
    "acc_width": MAX_ACC_WIDTH,
    "tree_levels_per_stage": MAX_TREE_LEVELS_PER_STAGE,
    "product_registers": MAX_PRODUCT_REGISTERS,
    "mixed_product_registers": MAX_PRODUCT_REGISTERS,
    "operand_registers": MAX_OPERAND_REGISTERS,
    "broadcast_registers": MAX_BROADCAST_REGISTERS,
    "result_registers": MAX_RESULT_REGISTERS,
    "vector_memory_bits": MAX_VECTOR_MEMORY_BITS,
    "config_bytes": MAX_CONFIG_BYTES,
}


def shown(value) -> str:
    """`value` for a message: its repr, but never unbounded (a huge integer is described by
    its size, a long text cut), and never an error (repr of an integer of more than 4300
    digits raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any object a caller passes; its repr is only shown
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


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
    # Micro-architecture, per lane (DESIGN §2.1): the last `lut_multipliers` of the
    # multipliers (PE-major: PE p's lane l is multiplier p * lanes + l) are built from LUTs
    # and carry chains instead of the platform's hard multiplier; the last `lutram_banks`
    # vector banks (same order) are held in LUT RAM whatever Yosys' costs would choose.
    lut_multipliers: int = 0
    lutram_banks: int = 0
    # Micro-architecture (DESIGN §2.1): fabric registers between every multiplier's product
    # and the adder tree, each one more cycle of PE latency; one lets a DSP block's output
    # reach the fabric in a cycle of its own (the largest ECP5 fits, §12.8).
    product_registers: int = 0
    # Micro-architecture (DESIGN §2.1): fabric registers added after every product of a PE
    # that mixes hard and LUT multipliers, whose hard multipliers' outputs travel farthest
    # to its adder tree (the ECP5-85k mix, §12.8); the other PEs' results wait for it.
    mixed_product_registers: int = 0
    # Micro-architecture (DESIGN §2.1): fabric registers in front of every multiplier's
    # operands, each one more cycle of PE latency; one splits the route from a vector
    # bank's block RAM (or the w fan-out) to a DSP block's input (the ECP5 fits, §12.8).
    operand_registers: int = 0
    # Micro-architecture (DESIGN §2.1): registers on the broadcasts from the core's control
    # to every PE's vector banks (the x writes and the read base), each a copy per PE that
    # synthesis keeps apart, and one more cycle of memory latency; one splits the routes
    # across the die of the largest fits (§12.8).
    broadcast_registers: int = 0
    # Micro-architecture (DESIGN §2.1): registers on every PE's result between the MAC
    # array's output stage and the y FIFO, each one more cycle of latency; they let the
    # results of PEs spread over the die reach a y FIFO placed beside the y stream's
    # consumer, so the stream's handshake stays local (the ECP5-85k mix, §12.8).
    result_registers: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "relu":
                if not isinstance(value, bool):
                    raise ConfigError(
                        f"relu must be a boolean (true or false), not {shown(value)}")
                continue
            if field.name == "pattern":
                # A str first: an unhashable value (a TOML array or table) cannot be looked up.
                if not isinstance(value, str) or value not in FORMATS:
                    raise ConfigError(f"pattern must be one of "
                                      f"{', '.join(map(repr, FORMATS))}, not {shown(value)}")
                continue
            if value is None and field.name in ("acc_width", "out_width"):
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{field.name} must be an integer, not {shown(value)}")

        for name in ("lanes", "pes", "bank_size", "nnz_per_bank", "cols", "tree_levels_per_stage"):
            self._require(name, getattr(self, name) >= 1, "must be at least 1")
        for name in ("weight_width", "act_width"):
            self._require(name, getattr(self, name) >= 1, "must be at least 1 bit")
        # Upper bounds before anything is computed from the values (DESIGN §2.2).
        for name in ("lanes", "pes"):
            self._require(name, getattr(self, name) <= MAX_MULTIPLIERS,
                          f"must be at most {MAX_MULTIPLIERS} (lanes x pes multipliers: more "
                          f"DSP blocks than the largest FPGAs have)")
        self._require(
            "pes",
            self.lanes * self.pes <= MAX_MULTIPLIERS,
            f"must keep lanes x pes within {MAX_MULTIPLIERS} multipliers (more DSP blocks than "
            f"the largest FPGAs have): at most {MAX_MULTIPLIERS // self.lanes} with "
            f"{self.lanes} lanes",
        )
        self._require("cols", self.cols <= MAX_COLS,
                      f"must be at most {MAX_COLS} (2**20 activations; every PE keeps two "
                      f"copies of x on chip)")
        for name in ("weight_width", "act_width"):
            self._require(name, getattr(self, name) <= MAX_OPERAND_WIDTH,
                          f"must be at most {MAX_OPERAND_WIDTH} bits (a 64 x 64-bit product "
                          f"already spans 16 18-bit DSP blocks)")
        for name in ("acc_width", "out_width"):
            if getattr(self, name) is not None:
                self._require(name, getattr(self, name) <= MAX_ACC_WIDTH,
                              f"must be at most {MAX_ACC_WIDTH} bits (64-bit operands and "
                              f"2**20 products need 148)")
        self._require("tree_levels_per_stage",
                      self.tree_levels_per_stage <= MAX_TREE_LEVELS_PER_STAGE,
                      f"must be at most {MAX_TREE_LEVELS_PER_STAGE} (the adder tree of "
                      f"{MAX_MULTIPLIERS} lanes has 12 levels)")
        self._require("bank_size", self.bank_size <= self.cols,
                      f"must not exceed cols ({self.cols})")
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

        for name, what in (("lut_multipliers", "multipliers"), ("lutram_banks", "vector banks")):
            value = getattr(self, name)
            self._require(name, value >= 0, "must not be negative")
            self._require(name, value <= self.multipliers,
                          f"must not exceed the {what} (lanes x pes = {self.multipliers})")
            self._require_taken(name)
        for name, most in (("product_registers", MAX_PRODUCT_REGISTERS),
                           ("mixed_product_registers", MAX_PRODUCT_REGISTERS),
                           ("operand_registers", MAX_OPERAND_REGISTERS),
                           ("broadcast_registers", MAX_BROADCAST_REGISTERS),
                           ("result_registers", MAX_RESULT_REGISTERS)):
            self._require(name, 0 <= getattr(self, name) <= most, f"must be from 0 to {most}")
            self._require_taken(name)
        for name, ok, rule in self.format.check(self):
            self._require(name, ok, rule)
        bits = self.vector_memory_bits
        self._require(
            "cols",
            bits <= MAX_VECTOR_MEMORY_BITS,
            f"must keep the vector memories within 2**28 bits (256 Mbit, about the on-chip "
            f"RAM of the largest FPGAs): {self.pes} PEs x {self.lanes} lanes x "
            f"{2 * self.x_beats} words x {self.act_width} bits = {bits} bits",
        )
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

    def _require_taken(self, name: str) -> None:
        """A micro-architecture choice (DESIGN §2.1) stays 0 unless the engine's core takes
        it (its format's ``lane_choices``)."""
        self._require(name, getattr(self, name) == 0 or name in self.format.lane_choices,
                      f"must be 0 for pattern {self.pattern!r} (its core does not take this "
                      f"choice)")

    def _require(self, name: str, ok: bool, rule: str):
        if not ok:
            raise ConfigError(f"{name} {rule}, not {shown(getattr(self, name))}")

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
    def dsp_multipliers(self) -> int:
        """Multipliers on the platform's multiplier (the first ones, PE-major)."""
        return self.multipliers - self.lut_multipliers

    def lut_lanes_of(self, pe: int) -> int:
        """How many of PE `pe`'s lanes (its last ones) have LUT multipliers."""
        return min(self.lanes, max(0, self.lut_multipliers - (self.pes - 1 - pe) * self.lanes))

    def lutram_lanes_of(self, pe: int) -> int:
        """How many of PE `pe`'s vector banks (its last lanes') are held in LUT RAM."""
        return min(self.lanes, max(0, self.lutram_banks - (self.pes - 1 - pe) * self.lanes))

    @property
    def vector_memory_bits(self) -> int:
        """Bits of every PE's vector memories: ``pes * lanes`` banks of two x buffers
        (``2 * x_beats`` words) of ``act_width`` bits."""
        return self.pes * self.lanes * 2 * self.x_beats * self.act_width

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
    valid TOML is taken as a string. One item is one assignment: a line break in it is
    refused (TOML would read the next line as a key of its own and the item would lose it).
    """
    result = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set takes name=value, not {shown(item)}")
        if name not in PARAMETERS:
            raise ConfigError(
                f"unknown parameter {shown(name)} in --set; known: {', '.join(PARAMETERS)}"
            )
        if "\n" in text or "\r" in text:
            raise ConfigError(f"--set {name}: one name=value a --set, not {shown(item)} "
                              f"(a line break)")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        except (ValueError, RecursionError) as exc:
            # An integer of more digits than Python converts, arrays nested too deep.
            raise ConfigError(f"--set {name}: cannot read the value {shown(text.strip())}: "
                              f"{_reason(exc)}") from None
        result[name] = value
    return result


def _reason(exc: BaseException) -> str:
    """The first sentence of `exc`'s message (not Python's advice after it)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split("; use sys.")[0]


def _decode(data: bytes, source: str) -> str:
    """The text of a configuration file, or ConfigError naming the file and where the first
    byte that is not UTF-8 sits."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{source}: not UTF-8 text: byte 0x{data[exc.start]:02x} at line "
                          f"{line}, column {column} (TOML files are UTF-8)") from None


def parse_config(data: bytes | str, source: str, overrides=()) -> Config:
    """Build a configuration from the contents of a TOML file (`data`, named `source` in
    messages) and ``name=value`` overrides."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(data)} bytes; a configuration is a small TOML file "
                          f"(at most {MAX_CONFIG_BYTES} bytes)")
    text = _decode(data, source) if isinstance(data, bytes) else data
    try:
        params = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{source}: cannot read it as TOML: {_reason(exc)}") from None
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown parameter {shown(unknown[0])}; known: {', '.join(PARAMETERS)}"
        )
    params.update(parse_overrides(overrides))
    return Config(**params)


def load_config(path: str | Path | None = None, overrides=()) -> Config:
    """Build a configuration from a TOML file (optional) and ``name=value`` overrides.

    The file is checked before it is read: a folder, a device or a file of more than
    :data:`MAX_CONFIG_BYTES` is refused with its name."""
    if path is None:
        return Config(**parse_overrides(overrides))
    path = Path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            kind = "a directory" if stat.S_ISDIR(status.st_mode) else "not a regular file"
            raise ConfigError(f"cannot read configuration {str(path)!r}: it is {kind}")
        if status.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {status.st_size} bytes; a configuration is a small "
                              f"TOML file (at most {MAX_CONFIG_BYTES} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {str(path)!r}: {exc.strerror}") from None
    return parse_config(data, str(path), overrides)
