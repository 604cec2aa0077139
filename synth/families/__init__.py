"""The FPGA families of the flow: one generic description (:mod:`.base`), one module per
family (:mod:`.ice40`, :mod:`.ecp5`), one dispatch (:func:`family_of` over :data:`FAMILIES`).

A :class:`Family` is everything that differs between vendors' chips while the device figures
(how many LUTs, DSP blocks, block RAMs, which pins) stay in :mod:`..targets`:

- the tools: the Yosys ``synth_*`` command and what a ``--ram`` policy adds to it, the
  nextpnr command with its device and layout options, the packer and the file suffixes;
- the pin constraint file (PCF or LPF);
- the netlist's cell names: how Yosys' ``stat -json`` counts LUTs, flip-flops, DSP blocks,
  block RAM and LUT RAM, and which nextpnr ``utilization`` keys are which; and which of
  Yosys' LUT4 count and nextpnr's logic-cell count is the report's ``luts`` (the LUT4s in
  use; both are reported, :meth:`Family.logic_resources`);
- the build options `bbsparse board` gives amaranth-boards' platform;
- the vendor primitives the HDL may ask for through platform hooks (below).

Platform hooks
--------------
A block never tests which family it is built for: it asks the platform it is elaborated
with, as Amaranth's own ``lib/memory.py`` does (``if hasattr(platform, "get_memory"):
return platform.get_memory(self)``). :class:`PlatformHooks` puts the family's answers on a
platform object; the flow elaborates with :class:`FamilyPlatform`, `bbsparse board` with
the amaranth-boards platform extended by the same hooks (:func:`with_hooks`).

``platform.get_multiplier(a_width, b_width)``
    A component that multiplies: ports ``a`` (signed, at least `a_width` bits), ``b``
    (signed, at least `b_width` bits), ``p`` (signed, at least ``a_width + b_width`` bits),
    and ``latency == 2``: ``p`` is the product of the ``a`` and ``b`` presented two clock
    edges (of the ``sync`` domain) earlier, with no enable and no stall. None when the family
    has nothing better than the fabric's ``*`` with registers around it (the caller then
    builds exactly that).
``platform.get_memory(memory)``
    Amaranth's hook for :class:`amaranth.lib.memory.Memory`: the family's vendor memory, or
    Amaranth's own lowering (what ``Memory.elaborate`` builds without a platform) when the
    family has none for this memory. No family has one yet, so every memory is lowered as
    without a platform and Yosys maps it.
``platform.get_registered_memory(width, depth)``
    A memory of `depth` words of `width` bits with its read data registered: ports
    ``w_addr``, ``w_data``, ``w_en`` (one write port), ``r_addr``, ``r_data`` (one read
    port, always reading, not transparent: a read of the word being written is undefined),
    and ``read_latency == 2``: ``r_data`` holds the word at the ``r_addr`` presented two
    clock edges earlier. None when the family's answer is what the caller builds without
    it: an Amaranth memory followed by a fabric register. The ECP5 answers with DP16KD
    blocks using their output register (``REGMODE="OUTREG"``, 0.94 ns clock-to-output
    instead of 5.6-5.8 ns), which Yosys' own mapping never uses, when Yosys would put the
    memory in block RAM under the platform's ``ram`` policy (:func:`memory_choice`).
"""

from __future__ import annotations

from .base import (
    KEEP_COPIES,
    RAM_POLICIES,
    BlockRam,
    Family,
    FamilyPlatform,
    PlatformHooks,
    block_shape,
    figure,
    memory_choice,
    register,
    with_hooks,
)
from .ecp5 import ECP5
from .ice40 import ICE40

__all__ = [
    "BlockRam", "Family", "FAMILIES", "family_of", "figure", "RAM_POLICIES",
    "PlatformHooks", "FamilyPlatform", "with_hooks", "ICE40", "ECP5", "memory_choice",
    "block_shape", "KEEP_COPIES",
]

#: Every family, by name: the one place that knows which families exist.
FAMILIES: dict[str, Family] = register(ICE40, ECP5)


def family_of(name: str) -> Family:
    """The family called `name` (``"ice40"``, ``"ecp5"``)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown FPGA family {name!r}; known: {', '.join(FAMILIES)}") from None
