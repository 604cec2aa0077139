"""A signed multiplier built from LUTs and carry chains only: radix-4 Booth partial products
summed in a pipelined adder tree, written with ``+`` and ``-`` only, so that no synthesis tool
maps it into a DSP block (DESIGN §12.2)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import clog2
from .pipeline import delay, require_positive

__all__ = ["LUTMultiplier"]


class LUTMultiplier(wiring.Component):
    """``p = a * b`` for signed `a_width`-bit `a` and signed `b_width`-bit `b`, exactly, in
    fabric logic: the interface of the platforms' multipliers (``get_multiplier``,
    DESIGN §15.3) with a latency of its own.

    Ports
    -----
    a : In(signed(a_width)); b : In(signed(b_width))
    p : Out(signed(a_width + b_width))  the product of the `a` and `b` presented
        :attr:`latency` clock edges earlier; one product a cycle, no enable, no stall.

    Structure. `b` is recoded in radix-4 Booth digits ``d_i = -2 b[2i+1] + b[2i] + b[2i-1]``
    (``b[-1] = 0``, `b` sign-extended to an even width): ``n = ceil(b_width / 2)`` digits in
    ``{-2, -1, 0, 1, 2}`` with ``b = sum(d_i * 4**i)``. Partial product ``i`` is ``d_i * a``,
    made as ``m_i XOR neg_i`` (``m_i`` = 0, `a` or ``2a``; one 5-input function of two bits of
    `a` and three of `b` per bit) plus the correction ``neg_i`` at weight ``4**i``, which is
    placed in the two free low bits of the next partial product (shifted by 2): no extra
    adder. The top digit's correction has no such place: its partial product is complemented
    before the operand registers (one LUT level, like the others) and made exact after them
    by its own incrementer (a short carry chain, beside the other partial products). The
    ``n`` terms are summed by a binary tree of adders (carry chains on an FPGA).

    Pipeline (:attr:`latency` = `latency` cycles): the operand registers (``a``, ``b`` and
    the top partial product), then ``latency - 1`` stages spread evenly over level 0 (the
    partial products) and the ``ceil(log2(n))`` tree levels, the last level always closing
    one; stages beyond the levels are plain registers at the end. At the default latency
    every stage is one LUT level or one carry chain.
    """

    #: The latency the MAC array gives its LUT lanes: every stage one LUT level or one carry
    #: chain (measured on an ECP5-25k, 16 of them behind registers: 280 MHz; with latency 3,
    #: the partial products and the first adders in one stage, 197 MHz).
    DEFAULT_LATENCY = 4

    def __init__(self, a_width: int, b_width: int, *, latency: int = DEFAULT_LATENCY):
        require_positive(a_width=a_width, b_width=b_width)
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 2:
            raise ValueError(f"latency must be an integer of at least 2 (operand and product "
                             f"registers), not {latency!r}")
        self._a_width = a_width
        self._b_width = b_width
        self._latency = latency
        super().__init__({
            "a": In(signed(a_width)),
            "b": In(signed(b_width)),
            "p": Out(signed(a_width + b_width)),
        })

    @property
    def latency(self) -> int:
        """Clock edges from `a` and `b` to their product at `p`."""
        return self._latency

    @property
    def digits(self) -> int:
        """Booth digits (partial products): ``ceil(b_width / 2)``."""
        return -(-self._b_width // 2)

    @property
    def levels(self) -> int:
        """Adder-tree levels: ``ceil(log2(digits))``."""
        return clog2(self.digits)

    @staticmethod
    def luts_of(a_width: int, b_width: int) -> int:
        """An estimate of the LUT4s one multiplier takes on a LUT4 fabric with 2-bit carry
        cells (the ECP5's CCU2C: two LUT4s): two per partial-product bit (a 5-input
        function) and one per bit of every adder (the top term's incrementer and the tree's
        adders, as :meth:`elaborate` sizes them). For 8 x 8 it gives 124; nextpnr placed
        the measured one in 121 logic cells (DESIGN §12.2)."""
        n = -(-b_width // 2)
        luts = 2 * n * (a_width + 1)
        chain = lambda width: 2 * (-(-width // 2))  # noqa: E731 - whole carry cells
        luts += chain(a_width + 2)
        # (width, shift) of each term, as elaborate builds them.
        nodes = [(a_width + 1, 0)] + [(a_width + 3, 2 * (i - 1)) for i in range(1, n - 1)]
        if n > 1:
            nodes.append((a_width + 4, 2 * (n - 2)))
        while len(nodes) > 1:
            merged = []
            for pair in range(0, len(nodes), 2):
                if pair + 1 == len(nodes):
                    merged.append(nodes[pair])
                    continue
                (low, shift), (high, high_shift) = nodes[pair], nodes[pair + 1]
                gap = high_shift - shift
                luts += chain(max(low - gap, high) + 1)
                merged.append((max(low, high + gap) + 1, shift))
            nodes = merged
        return luts

    def _digit(self, b_bits, i):
        """(one, two, neg) of Booth digit `i` of the (even-width, sign-extended) bits."""
        high = b_bits[2 * i + 1]
        mid = b_bits[2 * i]
        low = b_bits[2 * i - 1] if i else Const(0, 1)
        one = mid ^ low
        two = (high & ~mid & ~low) | (~high & mid & low)
        return one, two, high

    def elaborate(self, platform):
        m = Module()
        aw, n = self._a_width, self.digits
        # b sign-extended to 2n bits.
        b_bits = Signal(2 * n, name="b_bits")
        m.d.comb += b_bits.eq(self.b.as_signed())  # eq sign-extends a signed value

        # -- before the operand registers: the top digit's partial product, complemented
        # when the digit is negative (one 5-input function a bit, like every other one) -----
        one, two, neg = self._digit(b_bits, n - 1)
        top_x = Signal(signed(aw + 1), name="top_x")
        m.d.comb += top_x.eq(Mux(one, self.a, Mux(two, self.a << 1, 0)) ^ Mux(neg, -1, 0))

        # -- operand registers -----------------------------------------------------------
        # No register of the multiplier has a reset: data only (its user's `valid` counts).
        a_reg = Signal(signed(aw), name="a_reg", reset_less=True)
        b_reg = Signal(2 * n, name="b_reg", reset_less=True)
        top_x_reg = Signal(signed(aw + 1), name="top_x_reg", reset_less=True)
        top_neg = Signal(name="top_neg", reset_less=True)
        m.d.sync += [a_reg.eq(self.a), b_reg.eq(b_bits), top_x_reg.eq(top_x), top_neg.eq(neg)]

        # -- level 0, the partial products: term i (i >= 1) has weight 4**(i-1) and carries
        # the previous digit's correction in its two low bits; term 0 has weight 1; the top
        # term is made exact by its own incrementer (a short carry chain) ----------------
        terms = []
        negs = []
        for i in range(n - 1):
            one, two, neg = self._digit(b_reg, i)
            pp = Signal(signed(aw + 1), name=f"pp{i}")
            m.d.comb += pp.eq(Mux(one, a_reg, Mux(two, a_reg << 1, 0)) ^ Mux(neg, -1, 0))
            negs.append(neg)
            terms.append(pp)
        top = Signal(signed(aw + 2), name="top_pp")
        m.d.comb += top.eq(top_x_reg + top_neg)
        terms.append(top)
        nodes = []
        for i, term in enumerate(terms):
            if i == 0:
                node = term
            else:
                node = Signal(signed(len(term) + 2), name=f"term{i}")
                m.d.comb += node.eq(Cat(negs[i - 1], Const(0, 1), term).as_signed())
            nodes.append((node, 2 * (i - 1) if i else 0))

        # -- the adder tree: `latency - 1` register stages spread over level 0 (the partial
        # products) and the tree's levels, the last level always closing one -------------
        stages = self._latency - 1
        levels = self.levels
        units = levels + 1
        cut_after = {-(-(s + 1) * units // stages) - 1 for s in range(stages)}
        extra = stages - len(cut_after)

        def stage(node, level, name):
            if level not in cut_after:
                return node
            reg = Signal.like(node, name=f"{name}_reg", reset_less=True)
            m.d.sync += reg.eq(node)
            return reg

        nodes = [(stage(node, 0, node.name), shift)
                 for node, shift in nodes]
        for level in range(1, levels + 1):
            next_nodes = []
            for pair in range(0, len(nodes), 2):
                if pair + 1 == len(nodes):
                    low, shift = nodes[pair]
                    value, width = low, len(low)
                else:
                    (low, shift), (high, high_shift) = nodes[pair], nodes[pair + 1]
                    gap = high_shift - shift
                    width = max(len(low), len(high) + gap) + 1
                    # The high term's low `gap` bits are zero: the low term's bits below them
                    # pass through, the adder starts at `gap`.
                    if gap:
                        upper = low[gap:].as_signed() if len(low) > gap else Const(0, 1)
                        value = Cat(low[:gap], upper + high).as_signed()
                    else:
                        value = low + high
                node = Signal(signed(width), name=f"level{level}_sum{pair // 2}")
                m.d.comb += node.eq(value)
                next_nodes.append((stage(node, level, node.name), shift))
            nodes = next_nodes
        total, shift = nodes[0]
        assert shift == 0
        product = delay(m, total, extra, "product", reset_less=True)
        m.d.comb += self.p.eq(product)
        return m
