"""Verilog and its JSON description for a configuration (DESIGN §4, `bbsparse generate`)."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog

from ..golden.config import Config
from .axis import flat_ports, port_widths
from .engines import engine_of

__all__ = ["MODEL_TOP_NAME", "TOP_NAME", "describe", "describe_model", "design_files",
           "model_verilog_text", "verilog_text", "write_design", "write_if_changed"]

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


MODEL_TOP_NAME = "bbs_model"


def model_verilog_text(model) -> str:
    """The Verilog of `bbs_model` (DESIGN §16) for an
    :class:`~bbsparse.golden.model.IntegerModel`: the weight and bias images are inside, as
    memory initial contents."""
    from .model import ModelCore

    core = ModelCore(model)
    return verilog.convert(core, name=MODEL_TOP_NAME, emit_src=False, ports=flat_ports(core))


def describe_model(model) -> dict:
    """What an outside testbench needs to drive `bbs_model`: the shared core's parameters,
    the model's widths, the layer table and the ports (DESIGN §16.3)."""
    from .model import ModelCore, model_images
    from .spmv import BBSSpMV

    c = model.config
    images = model_images(model)
    first = model.layer_config(0)
    return {
        "top": MODEL_TOP_NAME,
        "parameters": c.to_dict(),
        "model": {
            "inputs": model.inputs,
            "outputs": model.outputs,
            "out_width": model.out_width,
            "bias_width": model.bias_width,
            "layers": images["layers"],
            "w_rom_words": len(images["w_words"]),
            "w_rom_bits": len(images["w_words"]) * c.w_beat_width,
            "bias_rom_words": len(images["bias_words"]),
            "bias_rom_bits": len(images["bias_words"]) * c.pes * model.bias_width,
        },
        "derived": {
            "x_beat_width": c.x_beat_width,
            "x_beats": first.x_beats,
            "y_beat_width": c.pes * model.out_width,
            "y_beats": model.layer_config(len(model.layers) - 1).row_groups(model.outputs),
            "core_latency": BBSSpMV.latency_of(c),
            "output_latency": ModelCore.OUTPUT_LATENCY,
            "clock": "clk",
            "reset": "rst (synchronous, active high)",
            "ports": {"clk": {"direction": "in", "width": 1},
                      "rst": {"direction": "in", "width": 1},
                      **port_widths(ModelCore.signature_for(model))},
        },
    }
