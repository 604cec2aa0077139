"""The banked vector memory of one PE: one memory per lane (DESIGN §3)."""

from amaranth.hdl import Module, Signal, unsigned
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
    r_addr : In(ArrayLayout(range(depth), lanes))
    r_data : Out(ArrayLayout(width, lanes))

    Latency: the read data is registered, :attr:`latency` = 2: ``r_data`` holds the words
    at the ``r_addr`` of two cycles earlier (a synchronous read and a register; every lane
    always reads). Read ports are not transparent: the core never reads the buffer it is
    writing. Throughput: one write and `lanes` reads every cycle.

    Platform hook: when the platform has ``get_registered_memory(width, depth)`` and it
    returns a memory (ports ``w_addr``, ``w_data``, ``w_en``, ``r_addr``, ``r_data``,
    ``read_latency`` 2) rather than None, each lane uses it in place of its memory and data
    register (the ECP5's DP16KD with its own output register: Yosys' mapping leaves the
    block's 5.6-5.8 ns clock-to-output in the path to the register). The latency is the same
    either way.

    Placement (`placement`, one of ``"auto"``, ``"block"``, ``"lutram"`` per lane; None: all
    ``"auto"``): where each lane's memory goes on an FPGA. ``"auto"`` is Yosys' choice by its
    costs (and the hook's, under the flow's ``--ram`` policy); ``"block"`` asks the hook as
    under ``--ram block`` and otherwise marks the memory ``ram_style = "block"``;
    ``"lutram"`` never asks the hook and marks the memory ``ram_style = "distributed"``
    (Yosys then builds LUT RAM whatever its costs say). The behaviour is the same everywhere
    (DESIGN §2.1, ``lutram_banks``).
    """

    _RAM_STYLE = {"auto": None, "block": "block", "lutram": "distributed"}

    def __init__(self, *, lanes: int, width: int, depth: int, placement=None):
        require_positive(lanes=lanes, width=width, depth=depth)
        placement = ("auto",) * lanes if placement is None else tuple(placement)
        if len(placement) != lanes or any(p not in self._RAM_STYLE for p in placement):
            raise ValueError(f"placement must give one of {', '.join(self._RAM_STYLE)} for "
                             f"each of the {lanes} lanes, not {placement!r}")
        self._placement = placement
        self._lanes = lanes
        self._width = width
        self._depth = depth
        addr = unsigned(max(1, (depth - 1).bit_length()))
        super().__init__({
            "w_addr": In(addr),
            "w_data": In(data.ArrayLayout(width, lanes)),
            "w_en": In(1),
            "r_addr": In(data.ArrayLayout(addr, lanes)),
            "r_data": Out(data.ArrayLayout(width, lanes)),
        })

    #: Cycles from ``r_addr`` to its word at ``r_data``.
    latency = 2

    def _vendor_memory(self, platform, lane: int):
        get_memory = getattr(platform, "get_registered_memory", None)
        placement = self._placement[lane]
        if get_memory is None or placement == "lutram":
            return None
        bank = (get_memory(self._width, self._depth) if placement == "auto"
                else get_memory(self._width, self._depth, ram=placement))
        latency = getattr(bank, "read_latency", None)
        if bank is not None and latency != self.latency:
            raise ValueError(f"the platform's registered memory must have read_latency "
                             f"{self.latency}, not {latency!r}")
        return bank

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            bank = self._vendor_memory(platform, lane)
            if bank is not None:
                m.submodules[f"bank{lane}"] = bank
                m.d.comb += [
                    bank.w_addr.eq(self.w_addr),
                    bank.w_data.eq(self.w_data[lane]),
                    bank.w_en.eq(self.w_en),
                    bank.r_addr.eq(self.r_addr[lane]),
                    self.r_data[lane].eq(bank.r_data),
                ]
                continue
            style = self._RAM_STYLE[self._placement[lane]]
            bank = memory.Memory(shape=self._width, depth=self._depth, init=[],
                                 attrs={"ram_style": style} if style else None)
            m.submodules[f"bank{lane}"] = bank
            write = bank.write_port()
            read = bank.read_port()
            word = Signal(self._width, name=f"lane{lane}_word", reset_less=True)
            m.d.comb += [
                write.addr.eq(self.w_addr),
                write.data.eq(self.w_data[lane]),
                write.en.eq(self.w_en),
                read.addr.eq(self.r_addr[lane]),
                read.en.eq(1),
            ]
            m.d.sync += word.eq(read.data)
            m.d.comb += self.r_data[lane].eq(word)
        return m
