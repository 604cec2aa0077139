"""`bbs_model`: a whole quantized model on one core, every layer's weights on chip."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..golden import csb
from ..golden.arith import signed_range
from ..golden.formats import BBSFormat
from ..golden.model import IntegerModel
from .axis import AXIStream, SkidBuffer
from .result_queue import ResultQueue
from .spmv import BBSSpMV
from .y_to_x import YToX

__all__ = ["ModelCore", "model_images"]


def _twos(value: int, width: int) -> int:
    return int(value) & ((1 << width) - 1)


def model_images(model: IntegerModel) -> dict:
    """The on-chip images of `model` (DESIGN §16.2): every layer's w frame back to back,
    the biases a row group a word, and the layer table."""
    c = model.config
    w_words, bias_words, table = [], [], []
    for k, layer in enumerate(model.layers):
        lc = model.layer_config(k)
        values, indices = csb.pack_w(lc, model.padded_weights(k))
        words = csb.w_beat_ints(lc, values, indices)
        groups = lc.row_groups(layer.rows)
        for g in range(groups):
            word = 0
            for p in range(c.pes):
                row = g * c.pes + p
                bias = int(layer.bias[row]) if row < layer.rows else 0
                word |= _twos(bias, model.bias_width) << (p * model.bias_width)
            bias_words.append(word)
        width = model.layer_width(k)
        lo, hi = signed_range(width)
        table.append({
            "name": layer.name, "rows": layer.rows, "cols": layer.cols,
            "w_base": len(w_words), "w_beats": len(words), "rounds": lc.rounds,
            "x_beats": lc.x_beats, "row_groups": groups, "bias_base": len(bias_words) - groups,
            "out_shift": layer.out_shift, "relu": layer.relu, "out_width": width,
            "low": 0 if layer.relu else lo, "high": hi,
        })
        w_words.extend(words)
    return {"w_words": w_words, "bias_words": bias_words, "layers": table}


class ModelCore(wiring.Component):
    """Every layer of an :class:`~bbsparse.golden.model.IntegerModel`, one after another, on
    one :class:`~bbsparse.hdl.spmv.BBSSpMV` (DESIGN §16).

    Ports (``clk``, synchronous ``rst``; flattened to AXI4-Stream names in Verilog)
    --------------------------------------------------------------------------------
    s_axis_x : In(AXIStream)  the first layer's x, ``lanes * act_width`` bits a beat,
        lane-transposed (DESIGN §3-4), ``x_beats`` of layer 0 a frame.
    m_axis_y : Out(AXIStream)  the last layer's outputs, ``pes * out_width`` bits a beat,
        one beat per row group, ``tlast`` on the last.
    error : Out(1)  the core's sticky error (an x ``tlast`` off its beat count).

    Inside: a weight ROM with every layer's w frame back to back, read in a loop into the
    core's w port (the core pairs the k-th w frame with the k-th x frame); the core's rounds
    and x frame length switch per layer from the layer table; the raw accumulators go
    through the per-layer output stage (bias from a ROM, round-half-up shift, ReLU,
    saturation); a hidden layer's outputs are scattered into the next layer's x layout and
    read back into the core as its x frame; the last layer's go out on ``m_axis_y``. The
    host's next x is taken as soon as the core has room for it, while the last layers of
    the current one still run.
    """

    #: Cycles of the output stage: bias add, shift, clamp; then its queue (DESIGN §16.3).
    OUTPUT_LATENCY = 3 + ResultQueue.LATENCY

    def __init__(self, model: IntegerModel):
        if not isinstance(model, IntegerModel):
            raise TypeError(f"model must be an IntegerModel, not {model!r}")
        c = model.config
        if not isinstance(c.format, BBSFormat):
            raise ValueError(f"the model core runs the BBS engine: pattern must be 'bbs', "
                             f"not {c.pattern!r}")
        self._model = model
        self._images = model_images(model)
        super().__init__(self.signature_for(model))

    @staticmethod
    def signature_for(model: IntegerModel) -> wiring.Signature:
        c = model.config
        return wiring.Signature({
            "s_axis_x": In(AXIStream(c.x_beat_width)),
            "m_axis_y": Out(AXIStream(c.pes * model.out_width)),
            "error": Out(1),
        })

    @property
    def images(self) -> dict:
        return self._images

    @classmethod
    def memories_of(cls, model: IntegerModel) -> list:
        """The memories beside the shared core's (for the fit check, DESIGN §16.2): the
        weight ROM (every layer's w frames), the bias ROM, the output queue and the y-to-x
        buffer. The ROMs are counted as written memories of the same shape."""
        from .engines import MemoryNeed

        c = model.config
        images = model_images(model)
        needs = [MemoryNeed("weight ROM (every layer's w frames)", 1, len(images["w_words"]),
                            c.w_beat_width),
                 MemoryNeed("bias ROM", 1, len(images["bias_words"]),
                            c.pes * model.bias_width),
                 MemoryNeed("output queue", 1, cls.OUTPUT_LATENCY + 2,
                            ResultQueue.entry_width(c.pes * model.out_width + 1))]
        if len(model.layers) > 1:
            needs.append(MemoryNeed("y-to-x buffer", c.lanes, c.x_beats, c.act_width))
        # The core's y FIFO is counted with the engine's memories for rows of
        # `cycles_per_row` beats; a layer's rows may be shorter (runtime shape), which
        # takes more credits, so more words (BBSSpMV.y_credits_of).
        more = (BBSSpMV.y_credits_of(c, runtime_shape=True) - BBSSpMV.y_credits_of(c))
        if more:
            needs.append(MemoryNeed("y FIFO (the layers' shorter rows)", 1, more,
                                    ResultQueue.entry_width(c.y_beat_width)))
        return needs

    def elaborate(self, platform):
        model, images = self._model, self._images
        c = model.config
        m = Module()
        layers = images["layers"]
        count = len(layers)
        pes, acc_width, out_width = c.pes, c.acc_width, model.out_width
        m.submodules.core = core = BBSSpMV(c, runtime_shape=True)

        def table(key, shape=None):
            values = [layer[key] for layer in layers]
            if shape is None:
                shape = range(min(values), max(values) + 1)
            return Array(Const(v, shape) for v in values)

        def layer_counter(name):
            return Signal(range(max(2, count)), name=name)

        def advance(counter):
            return counter.eq(Mux(counter == count - 1, 0, counter + 1))

        # -- x side: the host's x for layer 0, the scattered y of layer k-1 for layer k -----
        x_layer = layer_counter("x_layer")
        x_count = Signal(range(max(2, c.x_beats)))
        x_frame_beats = table("x_beats")[x_layer]
        m.d.comb += core.x_frame_beats.eq(x_frame_beats)
        cx = core.s_axis_x
        if count > 1:
            m.submodules.y_to_x = y_to_x = YToX(
                pes=pes, lanes=c.lanes, bank_size=c.bank_size, width=c.act_width,
                max_cols=c.cols, max_x_beats=c.x_beats, runtime=True)
            from_host = x_layer == 0
            m.d.comb += [
                cx.tdata.eq(Mux(from_host, self.s_axis_x.tdata, y_to_x.x.tdata)),
                cx.tvalid.eq(Mux(from_host, self.s_axis_x.tvalid, y_to_x.x.tvalid)),
                cx.tlast.eq(Mux(from_host, self.s_axis_x.tlast, y_to_x.x.tlast)),
                self.s_axis_x.tready.eq(from_host & cx.tready),
                y_to_x.x.tready.eq(~from_host & cx.tready),
            ]
        else:
            wiring.connect(m, wiring.flipped(self.s_axis_x), cx)
        with m.If(cx.tvalid & cx.tready):
            # A frame ends at its tlast or its beat count, as the core's x buffers end it.
            with m.If(cx.tlast | (x_count == x_frame_beats - 1)):
                m.d.sync += [x_count.eq(0), advance(x_layer)]
            with m.Else():
                m.d.sync += x_count.eq(x_count + 1)

        # -- w side: the weight ROM, read in a loop, one beat ahead ------------------------
        w_words = images["w_words"]
        m.submodules.w_rom = w_rom = memory.Memory(shape=c.w_beat_width, depth=len(w_words),
                                                   init=w_words)
        w_read = w_rom.read_port()
        w_addr = Signal(range(max(2, len(w_words))))
        issue_layer = layer_counter("w_issue_layer")
        w_layer = layer_counter("w_layer")
        w_valid = Signal()
        w_last = Signal()
        cw = core.s_axis_w
        w_ends = table("w_base", range(len(w_words) + 1))
        issue_last = w_addr == (w_ends[issue_layer] + table("w_beats")[issue_layer] - 1)
        take = ~w_valid | cw.tready
        m.d.comb += [
            w_read.addr.eq(w_addr),
            w_read.en.eq(take),
            cw.tdata.eq(w_read.data),
            cw.tvalid.eq(w_valid),
            cw.tlast.eq(w_last),
            core.rounds.eq(table("rounds")[w_layer]),
        ]
        with m.If(take):
            m.d.sync += [w_valid.eq(1), w_last.eq(issue_last)]
            m.d.sync += w_addr.eq(Mux(w_addr == len(w_words) - 1, 0, w_addr + 1))
            with m.If(issue_last):
                m.d.sync += advance(issue_layer)
        with m.If(cw.tvalid & cw.tready & cw.tlast):
            m.d.sync += advance(w_layer)

        # -- y side: bias, shift, ReLU, saturation per layer -----------------------------
        bias_words = images["bias_words"]
        bias_width = model.bias_width
        m.submodules.bias_rom = bias_rom = memory.Memory(shape=pes * bias_width,
                                                         depth=len(bias_words),
                                                         init=bias_words)
        bias_read = bias_rom.read_port()
        bias_addr = Signal(range(max(2, len(bias_words))))
        y_layer = layer_counter("y_layer")
        cy = core.m_axis_y
        y_accept = Signal()
        bias_next = Mux(bias_addr == len(bias_words) - 1, 0, bias_addr + 1)
        # The read port samples the address of the group after an accepted one on the same
        # edge, so its bias is ready the next cycle: a y beat every cycle, no bubble.
        m.d.comb += bias_read.addr.eq(Mux(y_accept, bias_next, bias_addr))
        with m.If(y_accept):
            m.d.sync += bias_addr.eq(bias_next)
            with m.If(cy.tlast):
                m.d.sync += advance(y_layer)

        sum_width = acc_width + 1
        half = [(1 << (layer["out_shift"] - 1)) if layer["out_shift"] else 0
                for layer in layers]
        element = signed(sum_width + 1)
        # Three registered stages that never stall, then a queue with credits (as the
        # core's own, DESIGN §14.3): a y beat is taken from the core only when the queue
        # is sure to have room for it, so back-pressure from the host or the y-to-x scatter
        # stops at the queue and is not a combinational path back into the core.
        result_width = pes * out_width
        m.submodules.out_queue = out_queue = ResultQueue(
            width=result_width + 1, credits=self.OUTPUT_LATENCY + 2)
        m.d.comb += [cy.tready.eq(out_queue.can_start), y_accept.eq(cy.tvalid & cy.tready),
                     out_queue.start.eq(y_accept)]
        valid = [Signal(name=f"out_valid{i}") for i in range(3)]
        # Stage 0: t = acc + bias, and the layer's parameters travel beside the values.
        params = data.StructLayout({
            "half": range(max(2, max(half) + 1)), "shift": range(max(2, acc_width)),
            "low": signed(out_width + 1), "high": signed(out_width + 1),
            "final": 1, "tlast": 1,
        })
        sums = Signal(data.ArrayLayout(signed(sum_width), pes))
        p0 = Signal(params)
        shifted = Signal(data.ArrayLayout(element, pes))
        p1 = Signal(params)
        result = Signal(data.ArrayLayout(signed(out_width), pes))
        p2 = Signal(params)
        m.d.sync += [valid[0].eq(y_accept), valid[1].eq(valid[0]), valid[2].eq(valid[1]),
                     p1.eq(p0), p2.eq(p1)]
        for p in range(pes):
            acc = cy.tdata[p * acc_width:(p + 1) * acc_width].as_signed()
            bias = bias_read.data[p * bias_width:(p + 1) * bias_width].as_signed()
            m.d.sync += sums[p].eq(acc + bias)
        m.d.sync += [
            p0.half.eq(Array(Const(h) for h in half)[y_layer]),
            p0.shift.eq(table("out_shift", range(max(2, acc_width)))[y_layer]),
            p0.low.eq(table("low", signed(out_width + 1))[y_layer]),
            p0.high.eq(table("high", signed(out_width + 1))[y_layer]),
            p0.final.eq(y_layer == count - 1),
            p0.tlast.eq(cy.tlast),
        ]
        # Stage 1: round half up and shift right (arithmetic).
        for p in range(pes):
            m.d.sync += shifted[p].eq((sums[p] + p0.half) >> p0.shift)
        # Stage 2: ReLU and saturation are one clamp to [low, high].
        for p in range(pes):
            value = shifted[p]
            m.d.sync += result[p].eq(Mux(value < p1.low, p1.low,
                                         Mux(value > p1.high, p1.high, value)))
        m.d.comb += [
            out_queue.w_en.eq(valid[2]),
            out_queue.w_data.eq(Cat(result, p2.final)),
            out_queue.w_last.eq(p2.tlast),
        ]

        # The last layer's results leave the chip; a hidden layer's become the next x.
        queued = out_queue.y
        final = queued.tdata[result_width]
        y = self.m_axis_y
        m.d.comb += [
            y.tdata.eq(queued.tdata[:result_width]),
            y.tlast.eq(queued.tlast),
            y.tvalid.eq(queued.tvalid & final),
        ]
        if count > 1:
            # The scatter's arbiter decides its ready late: a register slice keeps that
            # out of the queue's read logic.
            m.submodules.y_skid = skid = SkidBuffer(pes * c.act_width)
            scatter_layer = layer_counter("scatter_layer")
            following = Array(Const(min(k + 1, count - 1), range(count)) for k in range(count))
            next_layer = following[scatter_layer]
            m.d.comb += [
                y_to_x.cols.eq(table("cols")[next_layer]),
                y_to_x.x_beats.eq(table("x_beats")[next_layer]),
                skid.i.tdata.eq(Cat(queued.tdata[p * out_width:p * out_width + c.act_width]
                                    for p in range(pes))),
                skid.i.tlast.eq(queued.tlast),
                skid.i.tvalid.eq(queued.tvalid & ~final),
                queued.tready.eq(Mux(final, y.tready, skid.i.tready)),
            ]
            wiring.connect(m, skid.o, y_to_x.y)
            with m.If(y_to_x.x.tvalid & y_to_x.x.tready & y_to_x.x.tlast):
                m.d.sync += scatter_layer.eq(Mux(scatter_layer == count - 2, 0,
                                                 scatter_layer + 1))
        else:
            m.d.comb += queued.tready.eq(y.tready)
        m.d.comb += self.error.eq(core.error)
        return m
