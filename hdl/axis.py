"""AXI4-Stream as an interface inside the HDL, and its flat names at the Verilog boundary.

Inside the generator every stream is one member of a component's signature,
``s_axis_x: In(AXIStream(width))``, and blocks are joined with ``wiring.connect``, which
checks directions and widths. Only when a top is turned into Verilog are the members
flattened to the exact AXI4-Stream names of DESIGN §4 (``s_axis_x_tdata``, ``…_tvalid``,
``…_tready``, ``…_tlast``): :func:`flat_ports` joins a member's path with ``_`` where
Amaranth's default joins it with ``__``.
"""

from __future__ import annotations

from amaranth.hdl import Shape, ValueCastable
from amaranth.hdl._ir import PortDirection
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXIStream", "SkidBuffer", "flat_ports", "port_widths"]


class AXIStream(wiring.Signature):
    """An AXI4-Stream with exactly ``tdata``, ``tvalid``, ``tready`` and ``tlast``
    (DESIGN §4: no ``tkeep``, ``tstrb``, ``tuser``, ``tid`` or ``tdest``), seen from the
    source: ``Out(AXIStream(w))`` sends, ``In(AXIStream(w))`` receives.

    A transfer happens on a rising edge where ``tvalid & tready``; a source holds ``tdata``,
    ``tlast`` and ``tvalid`` until it does.
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._width = width
        super().__init__({
            "tdata": Out(width),
            "tvalid": Out(1),
            "tready": In(1),
            "tlast": Out(1),
        })

    @property
    def width(self) -> int:
        return self._width

    def __eq__(self, other):
        return isinstance(other, AXIStream) and other.width == self.width

    def __hash__(self):
        return hash((AXIStream, self._width))

    def __repr__(self):
        return f"AXIStream({self._width})"


def flat_ports(component: wiring.Component) -> dict:
    """The ``ports=`` of ``verilog.convert`` for `component`: every signature member as a
    port named by its path joined with ``_`` (``s_axis_x`` + ``tdata`` ->
    ``s_axis_x_tdata``), in signature order."""
    ports = {}
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        direction = PortDirection.Input if member.flow == In else PortDirection.Output
        ports["_".join(map(str, path))] = (value, direction)
    return ports


def port_widths(signature: wiring.Signature) -> dict:
    """``{flat name: {"direction": "in"/"out", "width": bits}}`` of a component signature,
    named as :func:`flat_ports` names them (what ``bbsparse generate`` describes)."""
    ports = {}
    for path, member in signature.members.flatten():
        if not member.is_port:
            continue
        ports["_".join(map(str, path))] = {
            "direction": "in" if member.flow == In else "out",
            "width": Shape.cast(member.shape).width,
        }
    return ports



class SkidBuffer(wiring.Component):
    """A register slice for an AXI4-Stream with a registered ``tready``: one beat a cycle,
    and no combinational path from the sink's ``tready`` to the source's (it ends at this
    block's registers). Two cycles of latency at most, one when the sink is ready.

    Ports: ``i`` : In(AXIStream(width)), ``o`` : Out(AXIStream(width)).
    """

    def __init__(self, width: int):
        super().__init__({"i": In(AXIStream(width)), "o": Out(AXIStream(width))})
        self._width = width

    def elaborate(self, platform):
        from amaranth.hdl import Module, Signal

        m = Module()
        i, o = self.i, self.o
        skid_valid = Signal()
        skid_data = Signal(self._width)
        skid_last = Signal()
        out_valid = Signal()
        m.d.comb += [i.tready.eq(~skid_valid), o.tvalid.eq(out_valid)]
        take = i.tvalid & ~skid_valid
        with m.If(o.tready | ~out_valid):
            with m.If(skid_valid):
                m.d.sync += [o.tdata.eq(skid_data), o.tlast.eq(skid_last), out_valid.eq(1),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [o.tdata.eq(i.tdata), o.tlast.eq(i.tlast), out_valid.eq(take)]
        with m.Elif(take):
            m.d.sync += [skid_data.eq(i.tdata), skid_last.eq(i.tlast), skid_valid.eq(1)]
        return m
