"""Small helpers shared by the pipelined blocks."""

from amaranth.hdl import Signal

__all__ = ["delay"]


def delay(m, signal, cycles: int, name: str, domain: str = "sync"):
    """Return `signal` delayed by `cycles` registers (no enable: the pipelines of this
    project never stall, back-pressure is handled by credits at their inputs)."""
    current = signal
    for stage in range(cycles):
        register = Signal.like(signal, name=f"{name}_d{stage + 1}")
        m.d[domain] += register.eq(current)
        current = register
    return current
