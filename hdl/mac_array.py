"""The MAC array: `pes` PEs of `lanes` multipliers, each followed by the output stage."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden.config import Config
from .lut_multiplier import LUTMultiplier
from .output_stage import OutputStage
from .pe import PE
from .pipeline import copy_flag, delay, require_positive

__all__ = ["MACArray"]


class MACArray(wiring.Component):
    """`pes` rows at once, `lanes` multiply-accumulates per row per cycle, in lockstep.

    Ports
    -----
    x : In(ArrayLayout(signed(act_width), pes*lanes))  PE ``p`` takes entries
        ``p*lanes .. p*lanes + lanes - 1``
    weight : In(ArrayLayout(signed(weight_width), pes*lanes))
    valid, first, last, tlast : In(1)  a beat; first / last beat of a row group; last group
        of the matrix. With `pe_flags`, `valid`, `first` and `last` are In(pes): PE ``p``
        takes bit ``p`` (the same beat for all, each PE's from registers placed near it:
        the ECP5-85k fit's one `valid` register reached its 39 PEs over the die, 5.2 ns)
    y : Out(ArrayLayout(signed(out_width), pes))  the rows' results after the output stage
        and ``config.result_registers`` registers (each PE's own, placed on the way to
        the y FIFO: DESIGN §2.1)
    y_valid, y_tlast : Out(1)
    y_valid_copies : Out(valid_copies)  with `valid_copies` > 1 only: `y_valid` again, each
        bit from a chain of registers of its own (:func:`~.pipeline.copy_flag`), for a
        consumer cut into that many parts over the die (the y FIFO's slices, DESIGN §14.3)

    Latency :attr:`latency` cycles from the `last` beat of a group to `y_valid`; one beat a
    cycle, never stalls.

    Multipliers: the last ``config.lut_multipliers`` (PE-major: PE ``p``'s lane ``l`` is
    multiplier ``p*lanes + l``) are LUT multipliers, the others the platform's
    (:class:`PE`). With any LUT multiplier, every PE runs at the LUT multiplier's latency
    (:meth:`multiplier_latency_of`), so all PEs stay in lockstep. A PE that mixes both kinds
    takes ``config.mixed_product_registers`` more cycles (:meth:`pe_multiplier_latency_of`):
    its hard multipliers' products travel farthest, to an adder tree the placer puts among
    its LUT lanes (DESIGN §2.1); every other PE's result waits for it in registers after
    its accumulator, so the rows still leave together.
    """

    def __init__(self, config: Config, *, valid_copies: int = 1, pe_flags: bool = False):
        require_positive(valid_copies=valid_copies)
        self._config = c = config
        self._valid_copies = valid_copies
        self._pe_flags = pe_flags
        copies = {"y_valid_copies": Out(valid_copies)} if valid_copies > 1 else {}
        flags = c.pes if pe_flags else 1
        super().__init__({
            "x": In(data.ArrayLayout(data.signed(c.act_width), c.pes * c.lanes)),
            "weight": In(data.ArrayLayout(data.signed(c.weight_width), c.pes * c.lanes)),
            "valid": In(flags),
            "first": In(flags),
            "last": In(flags),
            "tlast": In(1),
            "y": Out(data.ArrayLayout(data.signed(c.out_width), c.pes)),
            "y_valid": Out(1),
            "y_tlast": Out(1),
            **copies,
        })

    @staticmethod
    def multiplier_latency_of(config: Config) -> int:
        """Cycles of every PE's multipliers: 2 (operand and product registers, or the
        platform's multiplier) and ``config.product_registers`` fabric registers after
        them; with any LUT multiplier at least the LUT multiplier's latency, whose pipeline
        already ends in fabric registers: the DSP lanes' products then pass at least
        `product_registers` fabric registers, the LUT lanes' none beyond their own stages
        unless 2 + `product_registers` exceeds them (DESIGN §2.1)."""
        latency = 2 + config.product_registers
        if config.lut_multipliers:
            latency = max(latency, LUTMultiplier.DEFAULT_LATENCY)
        return latency

    @staticmethod
    def pe_multiplier_latency_of(config: Config, pe: int) -> int:
        """PE `pe`'s multiplier cycles: :meth:`multiplier_latency_of`, and
        ``config.mixed_product_registers`` more when the PE mixes hard and LUT multipliers."""
        mixed = 0 < config.lut_lanes_of(pe) < config.lanes
        return (MACArray.multiplier_latency_of(config)
                + (config.mixed_product_registers if mixed else 0))

    @staticmethod
    def pe_latency_of(config: Config, pe: int) -> int:
        """Cycles from a beat at PE `pe`'s inputs to its row's result at its `acc`."""
        return PE.latency_of(config.lanes, config.tree_levels_per_stage,
                             MACArray.pe_multiplier_latency_of(config, pe),
                             config.operand_registers)

    @staticmethod
    def slowest_pe_latency_of(config: Config) -> int:
        """Cycles of the slowest PE (:meth:`pe_latency_of`): every row's result leaves it
        together."""
        return max(MACArray.pe_latency_of(config, pe) for pe in range(config.pes))

    @staticmethod
    def latency_of(config: Config) -> int:
        return (MACArray.slowest_pe_latency_of(config) + OutputStage.LATENCY
                + config.result_registers)

    @property
    def latency(self) -> int:
        return self.latency_of(self._config)

    def elaborate(self, platform):
        c = self._config
        m = Module()
        slowest = self.slowest_pe_latency_of(c)
        after = OutputStage.LATENCY + c.result_registers  # from the PEs' `acc` to `y`
        row_valids = []  # each PE's row-complete strobe, when its result leaves the stage
        # A platform with a DSP floorplan gives every PE's hard multipliers their sites.
        hard = [c.lanes - c.lut_lanes_of(index) for index in range(c.pes)]
        sites = (platform.multiplier_sites(hard) if hasattr(platform, "multiplier_sites")
                 else [None] * c.pes)
        for index in range(c.pes):
            pe = PE(lanes=c.lanes, weight_width=c.weight_width, act_width=c.act_width,
                    acc_width=c.acc_width, tree_levels_per_stage=c.tree_levels_per_stage,
                    lut_lanes=c.lut_lanes_of(index),
                    multiplier_latency=self.pe_multiplier_latency_of(c, index),
                    operand_registers=c.operand_registers, sites=sites[index])
            # A PE faster than the slowest (one that mixes multipliers) holds its result
            # until the slowest one's: one register per accumulator bit and cycle.
            wait = slowest - pe.latency
            stage = OutputStage(acc_width=c.acc_width, out_width=c.out_width,
                                out_shift=c.out_shift, relu=c.relu)
            m.submodules[f"pe{index}"] = pe
            m.submodules[f"output_stage{index}"] = stage
            for lane in range(c.lanes):
                m.d.comb += [
                    pe.x[lane].eq(self.x[index * c.lanes + lane]),
                    pe.weight[lane].eq(self.weight[index * c.lanes + lane]),
                ]
            flag = index if self._pe_flags else 0
            m.d.comb += [
                pe.valid.eq(self.valid[flag]),
                pe.first.eq(self.first[flag]),
                pe.last.eq(self.last[flag]),
                stage.acc.eq(delay(m, pe.acc, wait, f"pe{index}_acc_wait", reset_less=True)),
                # The results' own registers, on their way to the y FIFO.
                self.y[index].eq(delay(m, stage.y, c.result_registers, f"pe{index}_result",
                                       reset_less=True)),
            ]
            row_valids.append((pe.acc_valid, wait + after))
        # All PEs work in lockstep: the last PE's row-complete strobe, once every PE's result
        # is there, stands for all.
        m.d.comb += [
            self.y_valid.eq(delay(m, *row_valids[-1], "row_valid")),
            # `tlast` counts only beside `y_valid`: no reset.
            self.y_tlast.eq(delay(m, self.tlast, self.latency, "row_tlast", reset_less=True)),
        ]
        # Copy k from the PE whose results are about the k-th part of y, through registers
        # of its own: each is placed towards its consumer, not one register crossing the die
        # to all of them (the ECP5-85k mix, seed 1: 5.4 ns of routing from `y_valid` to a y
        # FIFO slice's control).
        if self._valid_copies > 1:
            for k in range(self._valid_copies):
                valid, cycles = row_valids[k * c.pes // self._valid_copies]
                m.d.comb += self.y_valid_copies[k].eq(
                    copy_flag(m, valid, cycles, f"row_valid_copy{k}"))
        return m
