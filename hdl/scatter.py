"""The scatter unit (DESIGN §6): `lanes` writes or accumulations a cycle into banked memory."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import clog2
from .gather import check_mode, request_stage
from .pipeline import require_positive

__all__ = ["Scatter"]


class Scatter(wiring.Component):
    """`lanes` memories updated by rows of `lanes` (index, value) requests, and read out.

    Modes as in :class:`~bbsparse.hdl.gather.Gather`: *banked* (lane ``l`` updates bank
    ``l`` at the address it gives) or *crossbar* (index ``i`` goes to bank ``i % lanes``,
    address ``i // lanes``; colliding requests of a row wait, lowest lane first, and a row
    finishes before the next starts, so updates land in request order).

    With `accumulate`, an update adds its value to the word (read-modify-write); otherwise
    it overwrites it (the last in request order wins). Hazards: an accumulation reads its
    word one cycle and writes the sum the next; the read port is transparent to the write
    port, so a read of the word being written in that same cycle sees the new sum. That is
    the only overlap the two-stage pipeline allows, so back-to-back updates of one address
    (in consecutive rows, or serialised from one row) all count.

    Ports
    -----
    req : In(stream) of {index, value, mask} per lane; lanes outside `mask` update nothing
    rd_req : In(stream) of an address: read word `addr` of every bank, once no update is in
        flight (updates go first)
    rd_resp : Out(stream) of `lanes` words (the beat a chained layer reads as its x)
    stall_cycles : Out(32)  cycles a row needed beyond its first

    Throughput one request row a cycle without conflicts; latency of an update 2 cycles
    (it is visible to a read-out accepted after it); read-out latency 2 cycles.
    """

    def __init__(self, *, lanes: int, width: int, depth: int, mode: str = "crossbar",
                 accumulate: bool = True):
        require_positive(lanes=lanes, width=width, depth=depth)
        check_mode(mode, lanes)
        if not isinstance(accumulate, bool):
            raise ValueError(f"accumulate must be a boolean, not {accumulate!r}")
        self._lanes = lanes
        self._width = width
        self._depth = depth
        self._mode = mode
        self._accumulate = accumulate
        index_width = max(1, clog2(depth * lanes if mode == "crossbar" else depth))
        super().__init__({
            "req": In(stream.Signature(data.StructLayout({
                "index": data.ArrayLayout(unsigned(index_width), lanes),
                "value": data.ArrayLayout(width, lanes),
                "mask": lanes,
            }))),
            "rd_req": In(stream.Signature(range(depth))),
            "rd_resp": Out(stream.Signature(data.ArrayLayout(width, lanes))),
            "stall_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        addr_width = max(1, clog2(self._depth))

        # Stage A: the row being arbitrated (the gather's rule). No new update while a
        # read-out's words wait at the read ports: an update's read would replace them.
        rd_pending = Signal()  # a read-out's words arrive at the read ports this cycle
        a_valid, a_row, banks, addresses, grant, finishing, stalls = request_stage(
            m, self.req, mode=self._mode, lanes=lanes, accept=~rd_pending)
        m.d.comb += self.stall_cycles.eq(stalls)

        # Read-out: only while no update is arbitrating or about to write, and only when the
        # response register is free.
        rd_advance = ~self.rd_resp.valid | self.rd_resp.ready
        b_busy = Signal()  # stage B (the write of an accumulation) holds an update
        rd_accept = Signal()
        m.d.comb += [
            self.rd_req.ready.eq(rd_advance & ~a_valid & ~self.req.valid & ~b_busy),
            rd_accept.eq(self.rd_req.valid & self.rd_req.ready),
        ]
        m.d.sync += rd_pending.eq(rd_accept | (rd_pending & ~rd_advance))

        any_granted = Signal()
        m.d.comb += any_granted.eq(a_valid & (grant != 0))
        m.d.sync += b_busy.eq(any_granted if self._accumulate else 0)
        words = []
        for bank in range(lanes):
            mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
            m.submodules[f"bank{bank}"] = mem
            write = mem.write_port()
            # Transparent: an accumulation that reads the word being written this cycle
            # sees the sum being written, not the stale word.
            read = mem.read_port(transparent_for=(write,) if self._accumulate else ())
            chosen_any = 0
            address = 0
            value = 0
            for lane in range(lanes):
                if self._mode == "crossbar":
                    chosen = grant[lane] & (banks[lane] == bank)
                elif lane == bank:
                    chosen = grant[lane]
                else:
                    continue
                # At most one lane is granted a bank: OR-ing the gated fields selects it.
                chosen_any = chosen_any | chosen
                address = address | Mux(chosen, addresses[lane], 0)
                value = value | Mux(chosen, a_row.value[lane], 0)
            update_en = Signal(name=f"bank{bank}_update")
            update_addr = Signal(addr_width, name=f"bank{bank}_update_addr")
            update_value = Signal(self._width, name=f"bank{bank}_update_value")
            m.d.comb += [
                update_en.eq(chosen_any),
                update_addr.eq(address),
                update_value.eq(value),
            ]
            if self._accumulate:
                # Read now, add and write next cycle.
                b_en = Signal(name=f"bank{bank}_b_en")
                b_addr = Signal(addr_width, name=f"bank{bank}_b_addr")
                b_value = Signal(self._width, name=f"bank{bank}_b_value")
                m.d.sync += [b_en.eq(update_en), b_addr.eq(update_addr), b_value.eq(update_value)]
                m.d.comb += [
                    read.addr.eq(Mux(update_en, update_addr, self.rd_req.payload)),
                    read.en.eq(update_en | rd_accept),
                    write.addr.eq(b_addr),
                    write.data.eq(read.data + b_value),
                    write.en.eq(b_en),
                ]
            else:
                m.d.comb += [
                    read.addr.eq(self.rd_req.payload),
                    read.en.eq(rd_accept),
                    write.addr.eq(update_addr),
                    write.data.eq(update_value),
                    write.en.eq(update_en),
                ]
            words.append(read.data)

        with m.If(rd_advance):
            m.d.sync += self.rd_resp.valid.eq(rd_pending)
            with m.If(rd_pending):
                for bank in range(lanes):
                    m.d.sync += self.rd_resp.payload[bank].eq(words[bank])
        return m
