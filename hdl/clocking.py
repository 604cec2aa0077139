"""The board clock: the PLL settings of the iCE40 (``SB_PLL40_PAD``) and the ECP5
(``EHXPLLL``), and the clock domain a board top runs in (DESIGN §10.1, §12.6).

The settings are computed here, in Python, so a build can refuse a frequency the PLL
cannot make before any tool runs, naming the nearest ones it can:

- iCE40 (icestorm's ``icepll``, SIMPLE feedback): ``f_pfd = f_in / (DIVR + 1)`` within
  10-133 MHz, ``f_vco = f_pfd * (DIVF + 1)`` within 533-1066 MHz, ``f_out = f_vco / 2**DIVQ``
  (DIVQ 1-6) within 16-275 MHz; DIVR 0-15, DIVF 0-127; FILTER_RANGE from ``f_pfd``.
- ECP5 (prjtrellis' ``ecppll``, feedback from CLKOP): ``f_pfd = f_in / CLKI_DIV`` within
  3.125-400 MHz, ``f_out = f_pfd * CLKFB_DIV``, ``f_vco = f_out * CLKOP_DIV`` within
  400-800 MHz, ``f_out`` within 10-400 MHz; CLKI_DIV and CLKOP_DIV 1-128, CLKFB_DIV 1-80;
  among exact settings the one whose VCO is nearest 600 MHz.

:class:`BoardClock` makes the clock and reset of a board top's ``sync`` domain from the
board's clock pin through the PLL, the reset held until the PLL has locked and a further
15 µs have passed (the iCE40's block RAMs read zeroes for about 3 µs after configuration);
:class:`LockReset` is that reset, alone, so the simulator can test it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PLL_FAMILIES", "BoardClock", "LockReset", "PLLError", "PLLSetting",
           "ecp5_pll", "ice40_pll", "pll_outputs", "pll_setting"]

#: A requested frequency is made if the PLL's output is this close (relative): 100 ppm,
#: the tolerance of a board oscillator, so 33.333 asks for 100/3 MHz.
TOLERANCE = Fraction(1, 10_000)

MHZ = 1_000_000


class PLLError(ValueError):
    """A frequency the PLL cannot make from the board's clock."""


@dataclass(frozen=True)
class PLLSetting:
    """One setting of a PLL: its input, output, VCO and phase-detector frequencies (Hz, exact
    fractions) and the primitive's divider parameters."""

    family: str            # "ice40" or "ecp5"
    primitive: str         # SB_PLL40_PAD, EHXPLLL
    input_hz: Fraction
    output_hz: Fraction
    vco_hz: Fraction
    pfd_hz: Fraction
    params: dict = field(compare=True)

    @property
    def output_mhz(self) -> float:
        return float(self.output_hz / MHZ)

    def to_dict(self) -> dict:
        """For reports: frequencies in MHz (rounded to the Hz), the divider parameters."""
        def mhz(value):
            return round(float(value / MHZ), 6)
        return {"primitive": self.primitive, "input_mhz": mhz(self.input_hz),
                "output_mhz": mhz(self.output_hz), "vco_mhz": mhz(self.vco_hz),
                "pfd_mhz": mhz(self.pfd_hz), "params": dict(self.params)}


def _ice40_settings(input_hz: Fraction):
    """Every SIMPLE-feedback setting, in icepll's search order (DIVR, DIVF, DIVQ up)."""
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10 * MHZ <= pfd <= 133 * MHZ:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 * MHZ <= vco <= 1066 * MHZ:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if 16 * MHZ <= out <= 275 * MHZ:
                    filter_range = next(i for i, top in enumerate((17, 26, 44, 66, 101), 1)
                                        if pfd < top * MHZ) if pfd < 101 * MHZ else 6
                    yield PLLSetting("ice40", "SB_PLL40_PAD", input_hz, out, vco, pfd, {
                        "DIVR": divr, "DIVF": divf, "DIVQ": divq,
                        "FILTER_RANGE": filter_range})


def _ecp5_settings(input_hz: Fraction):
    """Every setting with feedback from CLKOP, in ecppll's search order."""
    for clki in range(1, 129):
        pfd = input_hz / clki
        if not Fraction(3125, 1000) * MHZ <= pfd <= 400 * MHZ:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not 10 * MHZ <= out <= 400 * MHZ:
                continue
            for clkop in range(1, 129):
                vco = out * clkop
                if 400 * MHZ <= vco <= 800 * MHZ:
                    # ecppll shifts CLKOP by half its period, as Lattice's tools do.
                    yield PLLSetting("ecp5", "EHXPLLL", input_hz, out, vco, pfd, {
                        "CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                        "CLKOP_CPHASE": clkop // 2})


_SETTINGS = {"ice40": _ice40_settings, "ecp5": _ecp5_settings}
PLL_FAMILIES = tuple(_SETTINGS)


def _as_hz(value) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)) or value <= 0:
        raise PLLError(f"a frequency must be a positive number of Hz, not {value!r}")
    return Fraction(value).limit_denominator(1000) if isinstance(value, float) \
        else Fraction(value)


def pll_outputs(family: str, input_hz) -> list[Fraction]:
    """Every output frequency (Hz, ascending) the family's PLL makes from `input_hz`."""
    return sorted({s.output_hz for s in _SETTINGS[family](_as_hz(input_hz))})


def _fmt(hz: Fraction) -> str:
    return f"{float(hz / MHZ):.4f}".rstrip("0").rstrip(".")


#: How each family's PLL tool picks among the settings that make the frequency: icepll the
#: first of the closest; ecppll the closest, then the VCO nearest 600 MHz.
_RANKING = {
    "ice40": lambda error, setting: (error,),
    "ecp5": lambda error, setting: (error, abs(setting.vco_hz - 600 * MHZ)),
}


def pll_setting(family: str, input_hz, output_hz) -> PLLSetting:
    """The setting of `family`'s PLL (``ice40``, ``ecp5``) that makes `output_hz` from
    `input_hz` (within 100 ppm). :class:`PLLError` names the nearest frequencies it can make
    if none does."""
    settings, ranking = _SETTINGS.get(family), _RANKING.get(family)
    if settings is None:
        raise PLLError(f"no PLL model for the {family!r} family (only {', '.join(_SETTINGS)})")
    f_in, f_out = _as_hz(input_hz), _as_hz(output_hz)
    best = None
    for setting in settings(f_in):
        error = abs(setting.output_hz - f_out)
        if error > TOLERANCE * f_out:
            continue
        key = ranking(error, setting)
        if best is None or key < best[0]:
            best = (key, setting)
    if best is not None:
        return best[1]
    outputs = pll_outputs(family, f_in)
    name = {"ice40": "iCE40 PLL (SB_PLL40_PAD)", "ecp5": "ECP5 PLL (EHXPLLL)"}[family]
    if not outputs:
        raise PLLError(f"the {name} cannot run from a {_fmt(f_in)} MHz input")
    below = [f for f in outputs if f < f_out]
    above = [f for f in outputs if f > f_out]
    nearest = ([below[-1]] if below else []) + ([above[0]] if above else [])
    raise PLLError(f"the {name} cannot make {_fmt(f_out)} MHz from {_fmt(f_in)} MHz (its "
                   f"outputs span {_fmt(outputs[0])}-{_fmt(outputs[-1])} MHz); the nearest "
                   f"it can: {' and '.join(_fmt(f) + ' MHz' for f in nearest)}")


def ice40_pll(input_hz, output_hz) -> PLLSetting:
    return pll_setting("ice40", input_hz, output_hz)


def ecp5_pll(input_hz, output_hz) -> PLLSetting:
    return pll_setting("ecp5", input_hz, output_hz)


class LockReset(wiring.Component):
    """The reset of a PLL's clock domain: `rst` is high until `lock` (asynchronous: two
    flip-flops synchronise it) has been high for `delay` cycles, and again as soon as it
    falls. Runs in the domain `domain` (reset-less)."""

    def __init__(self, delay: int, *, domain: str = "sync"):
        if not isinstance(delay, int) or delay < 1:
            raise ValueError(f"delay must be a positive integer, not {delay!r}")
        self._delay = delay
        self._domain = domain
        super().__init__({"lock": In(1), "rst": Out(1, init=1)})

    @property
    def delay(self) -> int:
        return self._delay

    def elaborate(self, platform):
        m = Module()
        d = m.d[self._domain]
        meta = Signal(name="lock_meta")
        locked = Signal(name="lock_sync")
        timer = Signal(range(self._delay + 1), name="lock_timer")
        d += [meta.eq(self.lock), locked.eq(meta)]
        with m.If(~locked):
            d += [timer.eq(0), self.rst.eq(1)]
        with m.Elif(timer == self._delay):
            d += self.rst.eq(0)
        with m.Else():
            d += timer.eq(timer + 1)
        return m


def _ice40_pll(m, p, pin, pll_clk, lock):
    # The reference comes straight from the package pin (the UP5K's pin 35 feeds the PLL),
    # so the pin is not also an input buffer.
    m.submodules.pll = Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
        p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
        p_FILTER_RANGE=p["FILTER_RANGE"],
        i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
        o_PLLOUTGLOBAL=pll_clk, o_LOCK=lock)


def _ecp5_pll(m, p, pin, pll_clk, lock):
    m.submodules.clk_buffer = buffer = io.Buffer("i", pin)
    m.submodules.pll = Instance(
        "EHXPLLL",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
        p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
        p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0,
        p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKI_DIV=p["CLKI_DIV"], p_FEEDBK_PATH="CLKOP",
        i_CLKI=buffer.i, i_CLKFB=pll_clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
        i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0,
        i_ENCLKOP=0,
        o_CLKOP=pll_clk, o_LOCK=lock)


#: Each family's PLL primitive, instantiated from a setting's parameters.
_PLL_INSTANCES = {"ice40": _ice40_pll, "ecp5": _ecp5_pll}


class BoardClock(wiring.Component):
    """The ``sync`` domain of a board top, made by `setting`'s PLL from the platform's
    default clock pin: ``sync`` is the PLL's output, its reset held until the PLL has locked
    and then for 15 µs (:class:`LockReset`). The output's frequency is given to the
    place-and-route tool as the domain's clock constraint. Only a real platform elaborates
    it (the PLL is a vendor primitive); simulations run the board top without it.

    Ports: `clk` and `rst` (Out(1)) the clock and reset of the domain the board top runs
    in (the caller makes its ``sync`` from them); `lock` (Out(1)) the PLL's lock."""

    POR_SECONDS = 15e-6

    def __init__(self, setting: PLLSetting):
        if not isinstance(setting, PLLSetting):
            raise TypeError(f"setting must be a PLLSetting, not {setting!r}")
        self.setting = setting
        super().__init__({"clk": Out(1), "rst": Out(1), "lock": Out(1)})

    def elaborate(self, platform):
        m = Module()
        s = self.setting
        # (keep: the net keeps this name through synthesis, for the clock constraint)
        pll_clk = Signal(name="pll_clk", attrs={"keep": 1})
        lock = Signal(name="pll_lock")
        pin = platform.request(platform.default_clk, dir="-")
        instantiate = _PLL_INSTANCES.get(s.family)
        if instantiate is None:
            raise ValueError(f"no PLL primitive for the {s.family!r} family")
        instantiate(m, s.params, pin, pll_clk, lock)
        platform.add_clock_constraint(pll_clk, float(s.output_hz))

        m.domains.pll_por = ClockDomain(reset_less=True, local=True)
        delay = max(1, int(self.POR_SECONDS * s.output_hz))
        m.submodules.lock_reset = reset = LockReset(delay, domain="pll_por")
        m.d.comb += [
            ClockSignal("pll_por").eq(pll_clk),
            reset.lock.eq(lock),
            self.clk.eq(pll_clk),
            self.rst.eq(reset.rst),
            self.lock.eq(lock),
        ]
        return m
