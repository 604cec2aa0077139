"""Small helpers shared by the pipelined blocks."""

from amaranth.hdl import Signal

__all__ = ["delay", "require_positive"]


def delay(m, signal, cycles: int, name: str, domain: str = "sync"):
    """Return `signal` delayed by `cycles` registers (no enable: the pipelines of this
    project never stall, back-pressure is handled by credits at their inputs)."""
    current = signal
    for stage in range(cycles):
        register = Signal.like(signal, name=f"{name}_d{stage + 1}")
        m.d[domain] += register.eq(current)
        current = register
    return current


def require_positive(**params) -> None:
    """Check that every keyword argument is a positive integer; the message names the first
    that is not, with its value."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
