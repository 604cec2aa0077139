"""Control of the two x buffers: the next vector loads while the current matrix reads."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import require_positive

__all__ = ["XBuffers"]


class XBuffers(wiring.Component):
    """Accept x frames of `beats` beats into two buffers of one vector memory, alternately.

    Buffer ``b`` occupies addresses ``b*beats .. b*beats + beats - 1``. A frame is written
    into the buffer the writer points at, only while that buffer is free; the reader uses
    the other. A buffer being read is always full and a buffer being written never is, so
    reads and writes never touch the same buffer.

    Ports
    -----
    x_valid, x_last : In(1); x_ready : Out(1)  the x stream's handshake (data goes straight
        to the memories, written at `mem_addr` when `mem_en`)
    mem_addr : Out(range(2*beats)); mem_en : Out(1)
    rd_buf : Out(1)  the buffer new reads must use; rd_full : Out(1) it holds a vector
    switch : In(1)   the reader has issued its last read request of a matrix: move to the
        other buffer
    release : In(1)  the oldest buffer still in use has been read for the last time (the
        same cycle as `switch` when reads complete at once; later when they are queued)
    tlast_error : Out(1)  one-cycle pulse: an x tlast disagreed with the beat count
    frame_beats : In(range(1, beats + 1))  only with `runtime_frames`: the length of the
        frame being written (held from its first beat to its last); buffers keep their
        places at ``b*beats``, so a frame may be shorter than `beats` (a model's narrower
        layer, DESIGN §16)

    A misplaced tlast still ends the frame where it stands (or the beat count does), so
    frames keep pairing with matrices instead of hanging the core.
    """

    def __init__(self, *, beats: int, runtime_frames: bool = False):
        require_positive(beats=beats)
        self._beats = beats
        self._runtime_frames = runtime_frames
        frames = {"frame_beats": In(range(1, beats + 1))} if runtime_frames else {}
        super().__init__({
            **frames,
            "x_valid": In(1),
            "x_last": In(1),
            "x_ready": Out(1),
            "mem_addr": Out(range(2 * beats)),
            "mem_en": Out(1),
            "rd_buf": Out(1),
            "rd_full": Out(1),
            "switch": In(1),
            "release": In(1),
            "tlast_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beats = self._beats
        full = Signal(2)
        wr_buf = Signal()
        release_buf = Signal()
        # At least one bit: a zero-width counter would come out as `[-1:0]` in Verilog.
        count = Signal(range(max(2, beats)))
        if self._runtime_frames:
            final = count == self.frame_beats - 1
        else:
            final = count == beats - 1
        m.d.comb += [
            self.x_ready.eq(~Mux(wr_buf, full[1], full[0])),
            self.mem_en.eq(self.x_valid & self.x_ready),
        ]
        full_next = Signal(2)
        rd_buf_next = Signal()
        rd_full = Signal()
        # A buffer the reader has switched away from stays full until its release, which may
        # come several cycles later (the unstructured engine releases when the gather's last
        # response is out). Until then it holds a frame already read: not readable, even if
        # the reader switches back to it first.
        consumed = Signal(2)
        consumed_next = Signal(2)
        m.d.comb += [full_next.eq(full), rd_buf_next.eq(self.rd_buf), self.rd_full.eq(rd_full),
                     consumed_next.eq(consumed)]
        readable = full_next & ~consumed_next
        m.d.sync += [full.eq(full_next), self.rd_buf.eq(rd_buf_next), consumed.eq(consumed_next),
                     rd_full.eq(Mux(rd_buf_next, readable[1], readable[0]))]
        with m.If(self.mem_en):
            m.d.comb += self.tlast_error.eq(self.x_last != final)
            with m.If(self.x_last | final):
                m.d.comb += full_next.bit_select(wr_buf, 1).eq(1)
                m.d.sync += [
                    wr_buf.eq(~wr_buf),
                    count.eq(0),
                    self.mem_addr.eq(Mux(wr_buf, 0, beats)),
                ]
            with m.Else():
                m.d.sync += [count.eq(count + 1), self.mem_addr.eq(self.mem_addr + 1)]
        with m.If(self.switch):
            m.d.comb += [rd_buf_next.eq(~self.rd_buf),
                         consumed_next.bit_select(self.rd_buf, 1).eq(1)]
        with m.If(self.release):
            # Buffers are released in the order they were filled. A release never meets
            # the fill of the same buffer: the writer only fills a buffer that is not full.
            m.d.comb += [full_next.bit_select(release_buf, 1).eq(0),
                         consumed_next.bit_select(release_buf, 1).eq(0)]
            m.d.sync += release_buf.eq(~release_buf)
        return m
