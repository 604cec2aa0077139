"""`bbs_synth_top`: the core behind a few pins, for place and route and timing.

The core's streams are hundreds of bits wide, more than the packages have pins. This top
feeds every core input from a serial-in shift register and captures every core output into
a parallel-in serial-out register, so that

- nothing of the core is optimised away (every input is a register Yosys cannot predict,
  every output is observed), and
- place and route sees the paths a board top would give it: register to core to register,
  with only five pins (clock, reset, serial in, load, serial out).

The reset pin goes through a two-register synchroniser, so the core's reset is a register
too and no path from a pin limits the clock.
"""

from amaranth.hdl import Cat, ClockDomain, DomainRenamer, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from ..hdl.engines import engine_of
from .targets import TOP_NAME

__all__ = ["TOP_NAME", "SynthTop"]

#: The longest serial input chain (see :meth:`SynthTop.elaborate`).
_CHAIN_BITS = 1024


class SynthTop(wiring.Component):
    """The core `config` selects (its engine's, :mod:`bbsparse.hdl.engines`) behind a serial
    register chain.

    Ports
    -----
    clk : In(1)   the one clock.
    rst : In(1)   asynchronous to `clk`; synchronised before it resets the core.
    sin : In(1)   shifted into the input register (all core inputs) every cycle `load` is low.
    load : In(1)  captures every core output into the output register and holds the input
                  register; otherwise both shift.
    sout : Out(1) the output register's low bit.

    The registers cost 2 x :attr:`input_bits` + 3 x :attr:`output_bits` +
    :attr:`one_bit_inputs` flip-flops (the chains, a register per input port, two per output
    port and per one-bit input port) and about :attr:`output_bits` LUTs (the load/shift
    multiplexer) beside the core.
    """

    def __init__(self, config: Config, core: wiring.Component | None = None):
        if not isinstance(config, Config):
            raise TypeError(f"config must be a bbsparse Config, not {config!r}")
        self._config = config
        # `core`: another design built on the core `config` (a compiled model, DESIGN §16).
        self._core = engine_of(config).core(config) if core is None else core
        # Every port of the core, nested interface members (AXI4-Stream) included, in
        # signature order: the serial chains are built in this order.
        ports = [(value, member.flow, Shape.cast(member.shape).width)
                 for _, member, value in self._core.signature.flatten(self._core)]
        self._inputs = [(value, width) for value, flow, width in ports if flow == In]
        self._outputs = [(value, width) for value, flow, width in ports if flow == Out]
        super().__init__({"clk": In(1), "rst": In(1), "sin": In(1), "load": In(1),
                          "sout": Out(1)})

    @property
    def config(self) -> Config:
        return self._config

    @property
    def input_bits(self) -> int:
        return sum(width for _, width in self._inputs)

    @property
    def one_bit_inputs(self) -> int:
        return sum(1 for _, width in self._inputs if width == 1)

    @property
    def output_bits(self) -> int:
        return sum(width for _, width in self._outputs)

    def elaborate(self, platform):
        m = Module()
        # `pins` has no reset: it holds the synchroniser and the serial registers, whose
        # contents do not matter. `core` is reset by the synchronised pin.
        m.domains.pins = pins = ClockDomain("pins", reset_less=True, local=True)
        m.domains.core = core_domain = ClockDomain("core", local=True)
        rst_meta = Signal(name="rst_meta")
        rst_sync = Signal(name="rst_sync")
        m.d.pins += [rst_meta.eq(self.rst), rst_sync.eq(rst_meta)]
        m.d.comb += [
            pins.clk.eq(self.clk),
            core_domain.clk.eq(self.clk),
            core_domain.rst.eq(rst_sync),
        ]

        m.submodules.core = DomainRenamer("core")(self._core)

        # Chains of at most _CHAIN_BITS: Yosys' techmap sorts cells topologically with a
        # recursion as deep as the longest chain, and the WebAssembly Yosys runs out of stack
        # on a chain of about 4000 flip-flops (a 320-multiplier w beat). Each further chain
        # starts from `sin` XOR the previous chain's first bit, so no two chains hold the
        # same bits (Yosys would merge them, and with them the core's inputs).
        chains = []
        for start in range(0, self.input_bits, _CHAIN_BITS):
            width = min(_CHAIN_BITS, self.input_bits - start)
            chain = Signal(width, name="shift_in" + (f"{len(chains)}" if chains else ""))
            head = self.sin ^ chains[-1][0] if chains else self.sin
            # The chains shift under an enable: a flip-flop taking a chain bit with no enable
            # (a port register, then the core's delay registers after it) would have the
            # same input as the chain's next one, and Yosys would merge them: the core's
            # pipeline would become part of the chain, placed along it (the ECP5-85k fit:
            # the PEs' in-bank index delays, 4.0 ns from their address adders).
            with m.If(~self.load):
                m.d.pins += chain.eq(Cat(head, chain[:-1]))
            chains.append(chain)
        shift_in = Cat(*chains)
        # Every core port has a register of its own between it and the chains (`port_in`,
        # `port_out`): a chain's flip-flops are placed along the chain, and a core input
        # taken straight from one crossed the die on the largest fits (the 85k's x_valid:
        # 6.8 ns of routing). A stream source or sink beside the core has its own register.
        offset = 0
        for port, width in self._inputs:
            held = Signal(width, name=f"port_in{offset}")
            m.d.pins += held.eq(shift_in[offset:offset + width])
            if width == 1:
                # A one-bit input (a tvalid, a tready, a tlast) feeds the core's control
                # through gates: a second register lets the last sit beside that control
                # (the ECP5-85k fit: the x and w handshakes from port registers at the die's
                # edge, 5.8 ns).
                near = Signal(name=f"port_in{offset}_near")
                m.d.pins += near.eq(held)
                held = near
            m.d.comb += port.eq(held)
            offset += width
        # The outputs pass two registers before their chain: a core output is often a
        # multiplexer (the y FIFO's head), whose select would otherwise reach every bit of
        # a register strung along the chain over the die (the 85k fit: 5.0-5.3 ns from the
        # y FIFO's `b_select`); the first stays beside the core, the second spans the way.
        captured = Signal(self.output_bits, name="port_out")
        m.d.pins += captured.eq(Cat(*(port for port, _ in self._outputs)))
        passed = Signal(self.output_bits, name="port_out_far")
        m.d.pins += passed.eq(captured)

        shift_out = Signal(self.output_bits, name="shift_out")
        with m.If(self.load):
            m.d.pins += shift_out.eq(passed)
        with m.Else():
            m.d.pins += shift_out.eq(shift_out >> 1)
        m.d.comb += self.sout.eq(shift_out[0])
        return m
