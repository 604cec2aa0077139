"""Control of the two x buffers: the next vector loads while the current matrix reads."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pipeline import require_positive

__all__ = ["XBuffers", "write_stage"]


class XBuffers(wiring.Component):
    """Accept x frames of `beats` beats into two buffers of one vector memory, alternately.

    Buffer ``b`` occupies addresses ``b*beats .. b*beats + beats - 1``. A frame is written
    into the buffer the writer points at, only while that buffer is free; the reader uses
    the other. A buffer being read is always full and a buffer being written never is (but
    for its release cycle with `ready_on_release`), so reads and writes never touch the same
    buffer (see the timing contract below).

    Ports
    -----
    x_valid, x_last : In(1); x_ready : Out(1)  the x stream's handshake (data goes straight
        to the memories, written at `mem_addr` when `mem_en`)
    mem_addr : Out(range(2*beats)); mem_en : Out(1)
    rd_buf : Out(1)  the buffer new reads must use; rd_full : Out(1) it holds a vector
    switch : In(1)   the reader has issued its last read request of a matrix: move to the
        other buffer
    release : In(1)  the oldest buffer still in use is done with: its last read reaches
        the memories no later than the next cycle (with `ready_on_release`: this cycle).
        The same cycle as `switch` or later (timing contract below)
    tlast_error : Out(1)  one-cycle pulse: an x tlast disagreed with the beat count
    frame_beats : In(range(1, beats + 1))  only with `runtime_frames`: the length of the
        frame being written (held from its first beat to its last); buffers keep their
        places at ``b*beats``, so a frame may be shorter than `beats` (a model's narrower
        layer, DESIGN §16)

    ready_on_release : constructor flag. Off, `x_ready` comes from registers only and a
        released buffer takes beats from the cycle after `release`. On, `x_ready` is also
        high in the cycle of `release` when the buffer being written is the one released
        (one gate more, from `release`), and the beat may be accepted in that cycle.

    A misplaced tlast still ends the frame where it stands (or the beat count does), so
    frames keep pairing with matrices instead of hanging the core.

    Timing contract, for a reader without bubbles (DESIGN §14.4): the engines write the
    memories one cycle after a beat is accepted (:func:`write_stage`), and their reads reach
    the memories one cycle or more after the read is issued (a w beat accepted while
    `rd_full`), so a buffer is read only after its last word has landed. A beat accepted
    in the cycle after `release` (or, with `ready_on_release`, in that cycle) lands one
    cycle later still. So `release` may come as early as one cycle before the last read of
    the buffer reaches the memories (without `ready_on_release`: the BBS core releases in
    the cycle of `switch`), or in that cycle (with it: the unstructured core, whose last read
    is only known in its own cycle): a buffer is never written while it is still read, and
    the next-but-one x frame loads while the next matrix streams, without a lost cycle.
    """

    def __init__(self, *, beats: int, runtime_frames: bool = False,
                 ready_on_release: bool = False):
        require_positive(beats=beats)
        self._beats = beats
        self._runtime_frames = runtime_frames
        self._ready_on_release = ready_on_release
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
        # Whether the beat being written is its frame's last: a flag registered with the
        # counter's next value, so that no comparator sits in front of the buffer flags.
        # A frame's first beat (`at_start`) reads it from the frame length itself, which may
        # only appear with that beat (a model's next layer, `runtime_frames`).
        at_start = Signal(init=1)
        next_is_final = Signal()
        if self._runtime_frames:
            final = Mux(at_start, self.frame_beats == 1, next_is_final)
            second_to_last = count == self.frame_beats - 2
        else:
            final = Mux(at_start, int(beats == 1), next_is_final)
            second_to_last = count == beats - 2
        ready = ~Mux(wr_buf, full[1], full[0])
        if self._ready_on_release:
            # The buffer being written is released in this cycle: its last read reaches the
            # memories now, and a beat accepted now is written in the next (write_stage).
            ready = ready | (self.release & (release_buf == wr_buf))
        m.d.comb += [
            self.x_ready.eq(ready),
            self.mem_en.eq(self.x_valid & self.x_ready),
        ]
        full_next = Signal(2)
        rd_buf_next = Signal()
        rd_full = Signal()
        # A buffer the reader has switched away from stays full until its release, which may
        # come several cycles later (the unstructured engine releases when the gather makes
        # the matrix's last reads, after any bank conflicts). Until then it holds a frame
        # already read: not readable, even if the reader switches back to it first.
        consumed = Signal(2)
        consumed_next = Signal(2)
        m.d.comb += [full_next.eq(full), rd_buf_next.eq(self.rd_buf), self.rd_full.eq(rd_full),
                     consumed_next.eq(consumed)]
        # Whether the buffer the reader will point at holds an unread frame. `switch` comes
        # late in the cycle (from the w handshake), so both outcomes are formed without it
        # and it only picks one: a switch marks the buffer it leaves consumed, which is not
        # the one it moves to, so the other buffer's readiness needs only the release and
        # the fill.
        released = Cat(~release_buf, release_buf) & self.release.replicate(2)
        unswitched = full_next & ~(consumed & ~released)
        m.d.sync += [full.eq(full_next), self.rd_buf.eq(rd_buf_next), consumed.eq(consumed_next),
                     rd_full.eq(Mux(self.switch,
                                    Mux(self.rd_buf, unswitched[0], unswitched[1]),
                                    Mux(self.rd_buf, unswitched[1], unswitched[0])))]
        with m.If(self.switch):
            m.d.comb += [rd_buf_next.eq(~self.rd_buf),
                         consumed_next.bit_select(self.rd_buf, 1).eq(1)]
        with m.If(self.release):
            # Buffers are released in the order they were filled. Only with
            # `ready_on_release` can the fill of the same buffer complete in the same cycle
            # (a one-beat frame); the fill below then wins.
            m.d.comb += [full_next.bit_select(release_buf, 1).eq(0),
                         consumed_next.bit_select(release_buf, 1).eq(0)]
            m.d.sync += release_buf.eq(~release_buf)
        # After the release: with `ready_on_release`, a one-beat frame may fill the buffer
        # released in the same cycle, and then it is full.
        with m.If(self.mem_en):
            m.d.comb += self.tlast_error.eq(self.x_last != final)
            with m.If(self.x_last | final):
                m.d.comb += full_next.bit_select(wr_buf, 1).eq(1)
                m.d.sync += [
                    wr_buf.eq(~wr_buf),
                    count.eq(0),
                    at_start.eq(1),
                    self.mem_addr.eq(Mux(wr_buf, 0, beats)),
                ]
            with m.Else():
                m.d.sync += [count.eq(count + 1), self.mem_addr.eq(self.mem_addr + 1),
                             at_start.eq(0), next_is_final.eq(second_to_last)]
        return m


def write_stage(m, xbuf: XBuffers, data, name: str = "x_write"):
    """The vector memories' write port, one cycle after the x beat is accepted: returns the
    registered (address, data, enable) of `xbuf`'s ``mem_addr``, `data` (the beat's
    ``tdata``) and ``mem_en``. A buffer released at the earliest moment its reader allows
    (XBuffers' timing contract) is then never written while it is still read. Address and
    data have no reset: they count only beside the enable (a reset of the data was the
    reset's largest load, 512 of its 656 flip-flops on the ECP5-85k mix, 6.3 ns of routing
    to the farthest)."""
    addr = Signal.like(xbuf.mem_addr, name=f"{name}_addr", reset_less=True)
    word = Signal.like(data, name=f"{name}_data", reset_less=True)
    enable = Signal(name=f"{name}_en")
    m.d.sync += [addr.eq(xbuf.mem_addr), word.eq(data), enable.eq(xbuf.mem_en)]
    return addr, word, enable
