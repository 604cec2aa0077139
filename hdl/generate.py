"""Verilog and its JSON description for a configuration (DESIGN §4, `bbsparse generate`)."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog

from ..golden.config import Config
from .axis import flat_ports, port_widths
from .engines import engine_of

__all__ = ["TOP_NAME", "verilog_text", "describe", "design_files", "write_if_changed",
           "write_design"]

TOP_NAME = "bbs_spmv"


def verilog_text(config: Config) -> str:
    """The Verilog of `bbs_spmv` for `config`, whichever engine it selects (every engine has
    the same ports and top name). The text depends on the configuration only (no source
    paths, no dates), so an unchanged design leaves build caches valid. The stream members
    become the flat AXI4-Stream names of DESIGN §4 here, and only here."""
    core = engine_of(config).core(config)
    return verilog.convert(core, name=TOP_NAME, emit_src=False, ports=flat_ports(core))


def describe(config: Config) -> dict:
    """Everything an outside testbench needs to drive the core: parameters and derived
    figures (DESIGN §4)."""
    engine = engine_of(config)
    ports = {"clk": {"direction": "in", "width": 1}, "rst": {"direction": "in", "width": 1},
             **port_widths(engine.core.signature_for(config))}
    c = config
    info = {
        "top": TOP_NAME,
        "parameters": c.to_dict(),
        "derived": {
            "banks_per_row": c.banks_per_row,
            "nnz_per_row": c.nnz_per_row,
            "rounds": c.rounds,
            "index_width": c.index_width,
            "w_entry_width": c.w_entry_width,
            "x_beat_width": c.x_beat_width,
            "w_beat_width": c.w_beat_width,
            "y_beat_width": c.y_beat_width,
            "cycles_per_row": c.cycles_per_row,
            "x_beats": c.x_beats,
            "multipliers": c.multipliers,
            "density": c.density,
            "ideal_speedup": c.ideal_speedup,
            "latency": engine.latency_of(config),
            "latency_note": "cycles from accepting the last w beat of a row group to its y beat"
                            " being valid, with the y FIFO empty",
            "y_credits": engine.y_credits_of(config),
            "vector_memory_words_per_lane": 2 * c.x_beats,
            "clock": "clk",
            "reset": "rst (synchronous, active high)",
            "ports": ports,
        },
    }
    c.format.describe(c, info["derived"])
    return info


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` unless the file already holds it (keeps build tools' timestamps)."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def design_files(config: Config, out_dir: str | Path) -> dict[Path, str]:
    """The files of `bbsparse generate` for `config`: ``out_dir/bbs_spmv.v`` and
    ``out_dir/bbs_spmv.json``, with their texts."""
    out_dir = Path(out_dir)
    return {
        out_dir / f"{TOP_NAME}.v": verilog_text(config),
        out_dir / f"{TOP_NAME}.json": json.dumps(describe(config), indent=2) + "\n",
    }


def write_design(config: Config, out_dir: str | Path, write=None) -> tuple[Path, Path]:
    """Write `bbs_spmv.v` and `bbs_spmv.json` into `out_dir`; return their paths.

    `write` receives ``{path: text}`` and writes them; the command line passes its atomic
    writer (all files or none, each only if its text changed). Without it, each file goes
    through :func:`write_if_changed`."""
    files = design_files(config, out_dir)
    if write is None:
        for path, text in files.items():
            write_if_changed(path, text)
    else:
        write(files)
    v_path, j_path = files
    return v_path, j_path
