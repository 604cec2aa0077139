"""A pipelined binary adder tree."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import clog2
from .pipeline import require_positive

__all__ = ["AdderTree"]


class AdderTree(wiring.Component):
    """Sum `count` signed values of `width` bits, exactly.

    Ports
    -----
    terms : In(ArrayLayout(signed(width), count))
    total : Out(signed(width + ceil(log2(count))))

    The tree has ``ceil(log2(count))`` levels of two-input adders; a register follows every
    `levels_per_stage` levels and the last level, so :attr:`latency` is
    ``ceil(levels / levels_per_stage)`` cycles (0 for a single term, which passes straight
    through). One new set of terms every cycle, no enable.
    """

    def __init__(self, *, count: int, width: int, levels_per_stage: int = 1):
        require_positive(count=count, width=width, levels_per_stage=levels_per_stage)
        self._count = count
        self._width = width
        self._levels_per_stage = levels_per_stage
        super().__init__({
            "terms": In(data.ArrayLayout(signed(width), count)),
            "total": Out(signed(width + clog2(count))),
        })

    @staticmethod
    def latency_of(count: int, levels_per_stage: int) -> int:
        """The latency of a tree of `count` terms, without building one."""
        return -(-clog2(count) // levels_per_stage)

    @property
    def levels(self) -> int:
        return clog2(self._count)

    @property
    def latency(self) -> int:
        return self.latency_of(self._count, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        nodes = [self.terms[i] for i in range(self._count)]
        width = self._width
        for level in range(self.levels):
            width += 1
            registered = (level + 1) % self._levels_per_stage == 0 or level + 1 == self.levels
            next_nodes = []
            for pair in range(0, len(nodes), 2):
                # Data: no reset (the PE's `valid` says when a sum counts).
                node = Signal(signed(width), name=f"level{level + 1}_sum{pair // 2}",
                              reset_less=True)
                # An odd node out is carried to the next level unchanged (sign-extended).
                value = nodes[pair] + nodes[pair + 1] if pair + 1 < len(nodes) else nodes[pair]
                if registered:
                    m.d.sync += node.eq(value)
                else:
                    m.d.comb += node.eq(value)
                next_nodes.append(node)
            nodes = next_nodes
        m.d.comb += self.total.eq(nodes[0])
        return m
