"""The engine registry: one object per engine, the one place that knows which engines exist.

An engine is what the configuration key ``pattern`` selects (DESIGN §9): a wire format and
its packers (:mod:`bbsparse.golden.formats`, the golden half), a core class with the ports
of DESIGN §4, its pipeline figures, the memories the fit check must find room for, and the
line ``bbsparse generate`` prints. The command line, the simulation harness, the bench, the
demo, the FPGA fit check and ``generate`` all ask :func:`engine_of`; none of them tests the
engine's name.

Adding an engine: its wire format in :mod:`bbsparse.golden.formats`, its core here (a
``wiring.Component`` taking a :class:`~bbsparse.golden.config.Config`, with
``latency_of`` / ``y_credits_of`` static methods and a ``memories`` description), and one
:data:`ENGINES` entry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..golden.formats import FORMATS, WireFormat, format_of
from .cbs import CBSSpMV
from .result_queue import CreditFIFO, ResultQueue
from .spmv import BBSSpMV
from .unstructured import UnstructuredSpMV

__all__ = ["ENGINES", "Engine", "MemoryNeed", "engine_of"]


@dataclass(frozen=True)
class MemoryNeed:
    """`count` memories of `depth` words of `width` bits, each with one write port and one
    synchronous read port (what the FPGA fit check maps onto block RAM or LUT RAM)."""
    role: str
    count: int
    depth: int
    width: int


@dataclass(frozen=True)
class Engine:
    format: WireFormat
    #: The core class: ``core(config)`` is a component with the ports of DESIGN §4.
    core: type
    #: Hierarchical name of the core's stall counter in the generated Verilog, if it has one.
    stall_counter: str | None = None

    @property
    def name(self) -> str:
        return self.format.name

    @property
    def summary(self) -> str:
        return self.format.summary

    def latency_of(self, config) -> int:
        """Cycles from accepting the last w beat of a row group to its y beat (DESIGN §14)."""
        return self.core.latency_of(config)

    def y_credits_of(self, config) -> int:
        return self.core.y_credits_of(config)

    def memories(self, config) -> list[MemoryNeed]:
        """The core's memories: per PE, one vector bank per lane holding two x buffers, and
        the y FIFO's storage (``CreditFIFO(depth=credits + 1)`` keeps ``credits - 1``
        words in a memory and two in registers). A core with other memories describes
        them itself (``memories_of``: role, count, depth, width)."""
        if hasattr(self.core, "memories_of"):
            return [MemoryNeed(*need) for need in self.core.memories_of(config)]
        # The y FIFO is one memory per slice (CreditFIFO), of one or two widths.
        slices = Counter(hi - lo for lo, hi in CreditFIFO.slice_bounds(
            ResultQueue.entry_width(config.y_beat_width), self.core.y_fifo_slices_of(config)))
        words = ResultQueue.memory_words(self.y_credits_of(config))
        return [
            MemoryNeed("vector banks", config.pes * config.lanes, 2 * config.x_beats,
                       config.act_width),
            *(MemoryNeed("y FIFO", count, words, width)
              for width, count in sorted(slices.items())),
        ]


#: Every engine, by the value of the ``pattern`` key.
ENGINES: dict[str, Engine] = {
    "bbs": Engine(FORMATS["bbs"], BBSSpMV),
    # The crossbar gather keeps the same memories as the banked core: a copy of x per PE in
    # `lanes` banks, two buffers deep.
    "unstructured": Engine(FORMATS["unstructured"], UnstructuredSpMV,
                           stall_counter="dut.gather.stall_cycles"),
    # The column engine: nonzero lists, two accumulator sets, the y FIFO (DESIGN §9.4).
    "cbs": Engine(FORMATS["cbs"], CBSSpMV),
}

assert set(ENGINES) == set(FORMATS), "every wire format needs an engine and vice versa"


def engine_of(config) -> Engine:
    """The engine `config` selects."""
    return ENGINES[format_of(config).name]
