"""Small helpers shared by the pipelined blocks."""

from amaranth.hdl import Signal

__all__ = ["delay", "copy", "COPY_ATTRIBUTE", "require_positive"]

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
    crosses the die to all of them. `reset_less` for data (no reset net to every copy)."""
    return delay(m, signal, cycles, name, domain, reset_less=reset_less, kept=True)


def require_positive(**params) -> None:
    """Check that every keyword argument is a positive integer; the message names the first
    that is not, with its value."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
