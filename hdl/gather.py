"""The gather unit (DESIGN §6): `lanes` reads a cycle from `lanes` banked memories."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import clog2
from .pipeline import require_positive

__all__ = ["Gather", "MODES", "check_mode", "crossbar_grants", "request_stage"]

MODES = ("banked", "crossbar")


def check_mode(mode: str, lanes: int) -> None:
    """Refuse an unknown mode, and a crossbar whose bank selection would need a divider."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "crossbar" and lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two in crossbar mode (bank = index mod "
                         f"lanes is then a bit slice), not {lanes!r}")


def crossbar_grants(m, pending, banks, name: str):
    """The arbiter: each bank serves the lowest pending lane that wants it this cycle.

    `pending` is a mask, `banks` the bank each lane wants. Returns the grant mask.
    Invariant: no two granted lanes share a bank, so every memory sees one access a cycle.
    """
    lanes = len(banks)
    grant = Signal(lanes, name=f"{name}_grant")
    for lane in range(lanes):
        blocked = 0
        for lower in range(lane):
            blocked = blocked | (pending[lower] & (banks[lower] == banks[lane]))
        m.d.comb += grant[lane].eq(pending[lane] & ~blocked)
    return grant


def request_stage(m, req, *, mode: str, lanes: int, copies: int = 1, advance=1, accept=1):
    """Stage A of the gather and the scatter: the request row being arbitrated.

    Holds the row accepted from stream `req` (payload fields `index` and `mask`, one per
    lane and copy) and the mask of its lanes still pending; each cycle in which `advance`
    is high, the granted lanes leave the mask, and when the last ones go (`finishing`) the
    next row may come in. `accept` can hold new rows back. Counts stall cycles (a row's
    cycles beyond its first) into ``stall_cycles`` of the returned record.

    Returns (a_valid, a_row, banks, addresses, grant, finishing): per lane its bank
    (``index mod lanes`` in crossbar mode, its own lane in banked mode) and its address in
    that bank.
    """
    count = lanes * copies
    bank_bits = clog2(lanes)
    a_valid = Signal()
    a_row = Signal(req.payload.shape())
    pending = Signal(count)
    banks, addresses = [], []
    for i in range(count):
        index = a_row.index[i]
        if mode == "crossbar":
            banks.append(index[:bank_bits] if bank_bits else 0)
            addresses.append(index[bank_bits:])
        else:
            banks.append(i % lanes)
            addresses.append(index)
    grant = Signal(count)
    for copy in range(copies):
        part = slice(copy * lanes, (copy + 1) * lanes)
        if mode == "crossbar":
            m.d.comb += grant[part].eq(crossbar_grants(m, pending[part], banks[part],
                                                       f"copy{copy}"))
        else:
            m.d.comb += grant[part].eq(pending[part])
    finishing = Signal()
    stall_cycles = Signal(32)
    m.d.comb += [
        finishing.eq(a_valid & ((pending & ~grant) == 0)),
        req.ready.eq(advance & (~a_valid | finishing) & accept),
    ]
    with m.If(advance):
        m.d.sync += pending.eq(pending & ~grant)
        with m.If(a_valid & ~finishing):
            m.d.sync += stall_cycles.eq(stall_cycles + 1)
        with m.If(req.ready):
            m.d.sync += [
                a_valid.eq(req.valid),
                a_row.eq(req.payload),
                pending.eq(Mux(req.valid, req.payload.mask, 0)),
            ]
    return a_valid, a_row, banks, addresses, grant, finishing, stall_cycles


class Gather(wiring.Component):
    """`copies` sets of `lanes` memories; every request row reads `lanes` words per set.

    Modes (chosen at generation):

    - *banked*: lane ``l`` reads only bank ``l``, at the address it gives. Never a conflict:
      one row a cycle.
    - *crossbar*: a lane gives a global index ``i``; it is served by bank ``i % lanes`` at
      address ``i // lanes``. Requests of one row that collide on a bank are served in later
      cycles; the arbiter rule is that of ``golden.gather.crossbar_schedule``: rows in order,
      a row starts when the previous one is fully served, and each cycle every bank serves
      the lowest pending lane of the row that wants it (fixed priority inside a row; no
      starvation, since a row is finished before the next begins). With ``copies > 1`` each
      set arbitrates on its own memories and a row finishes when every set has finished.

    Data comes back in request order, beside the request's `side` payload (carried along
    unchanged). ``stall_cycles`` counts the cycles a row needed beyond its first.
    ``served`` is high in the cycle a row's last requests are granted, when its last words
    are read from the memories (two cycles before it leaves on `resp`), with the row's side
    payload in ``served_side``: a user can free what the row reads (the unstructured
    core's x buffer) without waiting for the response.

    Ports
    -----
    w_addr, w_data, w_en : load port, writes word ``w_data[l]`` at address `w_addr` of bank
        ``l`` in every set (one x beat).
    req : In(stream) of {index: lanes*copies indices, mask: which lanes request, side}
        Lanes outside `mask` read nothing and return 0.
    resp : Out(stream) of {data: lanes*copies words, side}
    stall_cycles : Out(32)
    served : Out(1); served_side : Out(side_width)  see above

    Latency 3 cycles (arbitrate, read, output register). Throughput one row a cycle without
    conflicts; a row whose busiest bank has k requests takes k cycles. Back-pressure on
    `resp` holds the whole unit (memory read ports keep their data while disabled).
    """

    def __init__(self, *, lanes: int, width: int, depth: int, mode: str = "crossbar",
                 copies: int = 1, side_width: int = 1):
        require_positive(lanes=lanes, width=width, depth=depth, copies=copies,
                         side_width=side_width)
        check_mode(mode, lanes)
        self._lanes = lanes
        self._width = width
        self._depth = depth
        self._mode = mode
        self._copies = copies
        index_width = max(1, clog2(depth * lanes if mode == "crossbar" else depth))
        count = lanes * copies
        super().__init__({
            "w_addr": In(range(depth)),
            "w_data": In(data.ArrayLayout(width, lanes)),
            "w_en": In(1),
            "req": In(stream.Signature(data.StructLayout({
                "index": data.ArrayLayout(unsigned(index_width), count),
                "mask": count,
                "side": side_width,
            }))),
            "resp": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(width, count),
                "side": side_width,
            }))),
            "stall_cycles": Out(32),
            "served": Out(1),
            "served_side": Out(side_width),
        })

    LATENCY = 3

    @property
    def latency(self) -> int:
        return self.LATENCY

    @property
    def mode(self) -> str:
        return self._mode

    def elaborate(self, platform):
        m = Module()
        lanes, copies = self._lanes, self._copies
        count = lanes * copies
        bank_bits = clog2(lanes)

        # Everything moves only when the output register is free or being emptied.
        advance = Signal()
        m.d.comb += advance.eq(~self.resp.valid | self.resp.ready)

        # Stage A: the row being arbitrated.
        a_valid, a_row, banks, addresses, grant, finishing, stalls = request_stage(
            m, self.req, mode=self._mode, lanes=lanes, copies=copies, advance=advance)
        m.d.comb += [
            self.stall_cycles.eq(stalls),
            # The memories read in the cycles they are enabled (`advance`).
            self.served.eq(finishing & advance),
            self.served_side.eq(a_row.side),
        ]

        # The memories: bank k of a set reads the address of the lane granted to it.
        b_grant = Signal(count)
        b_bank = Signal(data.ArrayLayout(max(1, bank_bits), count))
        b_done = Signal()
        b_mask = Signal(count)
        b_side = Signal.like(a_row.side)
        bank_data = []
        for copy in range(copies):
            words = []
            for bank in range(lanes):
                mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
                m.submodules[f"copy{copy}_bank{bank}"] = mem
                write = mem.write_port()
                read = mem.read_port()
                m.d.comb += [
                    write.addr.eq(self.w_addr),
                    write.data.eq(self.w_data[bank]),
                    write.en.eq(self.w_en),
                    read.en.eq(advance),
                ]
                address = 0
                for lane in range(lanes):
                    i = copy * lanes + lane
                    if self._mode == "crossbar":
                        chosen = grant[i] & (banks[i] == bank)
                    elif lane == bank:
                        chosen = grant[i]
                    else:
                        continue
                    # At most one lane is granted a bank, so OR-ing the gated addresses
                    # selects it.
                    address = address | Mux(chosen, addresses[i], 0)
                m.d.comb += read.addr.eq(address)
                words.append(read.data)
            bank_data.append(words)
        with m.If(advance):
            m.d.sync += [
                b_grant.eq(grant & a_valid.replicate(count)),
                b_done.eq(finishing),
                b_mask.eq(a_row.mask),
                b_side.eq(a_row.side),
            ]
            for i in range(count):
                if self._mode == "crossbar" and bank_bits:
                    m.d.sync += b_bank[i].eq(banks[i])

        # Stage B: words arrive one cycle after their grant; a row's words are collected
        # until its last grant's words arrive, then the row goes to the output register.
        collect = Signal(data.ArrayLayout(self._width, count))
        arriving = Signal(data.ArrayLayout(self._width, count))
        for i in range(count):
            copy, lane = divmod(i, lanes)
            words = bank_data[copy]
            if self._mode == "crossbar" and bank_bits:
                selected = Signal(self._width, name=f"lane{i}_word")
                with m.Switch(b_bank[i]):
                    for bank in range(lanes):
                        with m.Case(bank):
                            m.d.comb += selected.eq(words[bank])
                word = selected
            else:
                word = words[lane]
            m.d.comb += arriving[i].eq(Mux(b_grant[i], word, collect[i]))
        with m.If(advance):
            m.d.sync += [
                collect.eq(arriving),
                self.resp.valid.eq(b_done),
            ]
            with m.If(b_done):
                m.d.sync += self.resp.payload.side.eq(b_side)
                for i in range(count):
                    # A lane outside the mask requested nothing and returns 0.
                    m.d.sync += self.resp.payload.data[i].eq(Mux(b_mask[i], arriving[i], 0))
        return m

