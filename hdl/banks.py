"""The banked vector memory of one PE: one memory per lane (DESIGN §3)."""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import require_positive

__all__ = ["VectorBanks"]


class VectorBanks(wiring.Component):
    """`lanes` memories of `depth` words of `width` bits, one per lane.

    Lane ``l``'s memory holds the x segments of matrix banks ``l, l+lanes, …`` (DESIGN §3).
    A write stores one word into every lane at the same address (one x beat). Each lane reads
    its own memory at its own address: no two lanes ever touch the same memory, so the
    gather needs no arbitration and never stalls.

    Ports
    -----
    w_addr : In(range(depth)); w_data : In(ArrayLayout(width, lanes)); w_en : In(1)
    r_addr : In(ArrayLayout(range(depth), lanes)); r_en : In(1)
    r_data : Out(ArrayLayout(width, lanes))

    Latency: reads are synchronous, data arrives 1 cycle after the address (when `r_en`);
    read ports are not transparent: the core never reads the buffer it is writing.
    Throughput: one write and `lanes` reads every cycle.
    """

    def __init__(self, *, lanes: int, width: int, depth: int):
        require_positive(lanes=lanes, width=width, depth=depth)
        self._lanes = lanes
        self._width = width
        self._depth = depth
        addr = unsigned(max(1, (depth - 1).bit_length()))
        super().__init__({
            "w_addr": In(addr),
            "w_data": In(data.ArrayLayout(width, lanes)),
            "w_en": In(1),
            "r_addr": In(data.ArrayLayout(addr, lanes)),
            "r_en": In(1),
            "r_data": Out(data.ArrayLayout(width, lanes)),
        })

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            bank = memory.Memory(shape=self._width, depth=self._depth, init=[])
            m.submodules[f"bank{lane}"] = bank
            write = bank.write_port()
            read = bank.read_port()
            m.d.comb += [
                write.addr.eq(self.w_addr),
                write.data.eq(self.w_data[lane]),
                write.en.eq(self.w_en),
                read.addr.eq(self.r_addr[lane]),
                read.en.eq(self.r_en),
                self.r_data[lane].eq(read.data),
            ]
        return m
