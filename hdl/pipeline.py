"""Small helpers shared by the pipelined blocks."""

from amaranth.hdl import ResetSignal, Signal

__all__ = ["delay", "copy", "copy_flag", "COPY_ATTRIBUTE", "require_positive"]

#: The attribute of a register that is a deliberate copy of another (register duplication,
#: :func:`copy`). Synthesis merges registers of the same input into one; the flow's Yosys
#: script marks every flip-flop driving a wire with this attribute ``keep`` before it
#: synthesizes (:data:`bbsparse.synth.families.KEEP_COPIES`), so each copy keeps its own.
COPY_ATTRIBUTE = "bbs_copy"


def delay(m, signal, cycles: int, name: str, domain: str = "sync", *,
          reset_less: bool = False, kept: bool = False):
    """Return `signal` delayed by `cycles` registers (no enable: the pipelines of this
    project never stall, back-pressure is handled by credits at their inputs). `kept`
    marks the first register a copy of its own (:func:`copy`)."""
    current = signal
    for stage in range(cycles):
        register = Signal.like(signal, name=f"{name}_d{stage + 1}", reset_less=reset_less,
                               attrs={COPY_ATTRIBUTE: 1} if kept and stage == 0 else {})
        m.d[domain] += register.eq(current)
        current = register
    return current


def copy(m, signal, cycles: int, name: str, *, reset_less: bool = False,
         domain: str = "sync"):
    """Return `signal` delayed by `cycles` registers, like :func:`delay`, but the first is a
    copy of its own (:data:`COPY_ATTRIBUTE`): called once per destination, each
    destination gets its own chain, placed near it, instead of one register whose output
    crosses the die to all of them. `reset_less` for data and for flags that count only
    beside a `valid` (a copy with a reset has a gate in front, :func:`copy_flag`)."""
    return delay(m, signal, cycles, name, domain, reset_less=reset_less, kept=True)


def copy_flag(m, signal, cycles: int, name: str, *, domain: str = "sync"):
    """Return the 1-bit `signal` delayed by `cycles` (at least 2) registers, like
    :func:`copy`, for a flag that must read 0 after a reset (a `valid`), with no gate in
    front of the copy: a copy with a reset is a multiplexer of the reset and its source,
    the same for every copy, and Yosys makes those one gate (it does not fold a reset into
    a kept flip-flop), placed somewhere and routed to every copy (the ECP5-85k fit: 3.6 ns
    after the gate). So the copy has no reset and takes its source's register alone; the
    register after it clears on the reset and on a copy of the reset a cycle late, kept
    beside it, so that what the copy took during a reset never passes."""
    if cycles < 2:
        raise ValueError(f"a copied flag needs at least 2 registers, not {cycles!r}")
    first = copy(m, signal, 1, name, reset_less=True, domain=domain)
    late_reset = Signal(name=f"{name}_late_reset", reset_less=True,
                        attrs={COPY_ATTRIBUTE: 1})
    m.d[domain] += late_reset.eq(ResetSignal(domain))
    second = Signal(name=f"{name}_d2")
    m.d[domain] += second.eq(first & ~late_reset)
    return delay(m, second, cycles - 2, f"{name}_late")


def require_positive(**params) -> None:
    """Check that every keyword argument is a positive integer; the message names the first
    that is not, with its value."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
