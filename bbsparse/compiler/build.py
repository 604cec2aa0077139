"""`bbsparse compile`: an ONNX model to a folder holding its accelerator (DESIGN §16).

read (onnx_import) -> prune (kept if it already follows the pattern) -> optional masked
fine-tuning -> int8 quantization with biases -> fit check against the target -> the output
folder: Verilog and its JSON, the manifest, the integer model, the weight images, the model
file itself, and for an FPGA target the bitstream with its report. The folder is built
beside its final place and renamed into it only when everything has succeeded, so an error
leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden.config import Config
from ..golden.model import IntegerLayer, IntegerModel
from ..toolchain import bbsparse_version
from .quantize import (
    CompileError,
    CoreShape,
    Quantized,
    accuracy,
    finetune,
    prune_layers,
    quantize,
)

__all__ = ["CompileOptions", "Compiled", "MANIFEST", "TARGETS", "compile_model",
           "load_compiled", "model_memories"]

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
INTEGER_MODEL = "integer_model.npz"
#: Where `bbsparse compile --target` can put a model: the Verilator simulation, a board top
#: (UART, DESIGN §10) or a chip behind the serial wrapper of `bbsparse synth` (no I/O).
BOARD_TARGETS = ("icebreaker", "ulx3s")
TARGETS = ("sim", *BOARD_TARGETS, "ice40-up5k", "ecp5-25k", "ecp5-45k", "ecp5-85k")

Log = Callable[[str], None]


@dataclass
class CompileOptions:
    model: str
    calibration: np.ndarray
    shape: CoreShape
    target: str = "sim"
    finetune_x: np.ndarray | None = None
    labels: np.ndarray | None = None
    epochs: int = 10
    seed: int = 0
    placement_seed: int = 1
    #: The design clock (a board: made by its PLL, default the board's model clock) or the
    #: clock constraint (a chip, default the target's), in MHz; None: the default.
    clock_mhz: float | None = None
    #: The UART's rate on a board (None: BOARD_BAUD); `bbsparse run` takes it from the
    #: manifest.
    baud: int | None = None


#: The UART rate of a model board when `--baud` does not say.
BOARD_BAUD = 115200


@dataclass
class Compiled:
    """A compiled folder, read back: the manifest, the integer model and its scales."""
    folder: Path
    manifest: dict
    quantized: Quantized
    float_model: object = field(default=None)


# -- the integer model on disk ---------------------------------------------------------------


def save_integer_model(model: IntegerModel) -> dict[str, np.ndarray]:
    arrays = {"config": np.array(json.dumps(model.config.to_dict())),
              "widths": np.array([model.out_width, model.bias_width])}
    for k, layer in enumerate(model.layers):
        arrays[f"w{k}"] = np.asarray(layer.weights, dtype=np.int64)
        arrays[f"b{k}"] = np.asarray(layer.bias, dtype=np.int64)
        arrays[f"s{k}"] = np.array([layer.out_shift, int(layer.relu)])
        arrays[f"name{k}"] = np.array(layer.name)
    return arrays


def load_integer_model(path: Path) -> IntegerModel:
    with np.load(path, allow_pickle=False) as data:
        config = Config(**json.loads(str(data["config"])))
        out_width, bias_width = (int(v) for v in data["widths"])
        layers = []
        k = 0
        while f"w{k}" in data:
            shift, relu = (int(v) for v in data[f"s{k}"])
            layers.append(IntegerLayer(data[f"w{k}"], data[f"b{k}"], out_shift=shift,
                                       relu=bool(relu), name=str(data[f"name{k}"])))
            k += 1
    return IntegerModel(config, tuple(layers), out_width=out_width, bias_width=bias_width)


def _hex(words, width: int) -> str:
    digits = max(1, -(-width // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


# -- memories and the fit check --------------------------------------------------------------


def model_memories(model: IntegerModel, target_name: str):
    """The memories beside the core's on `target_name` (for the fit check): the model
    core's, and on a board also the host link's buffers (DESIGN §16.2, §10.1)."""
    if target_name in BOARD_TARGETS:
        from ..synth.boards import model_board_memories

        return model_board_memories(model)
    from ..hdl.model import ModelCore

    return ModelCore.memories_of(model)


def _fit(model: IntegerModel, images: dict, target_name: str, log: Log) -> dict | None:
    """FitError-free fit check before any tool runs: CompileError naming the layers and the
    figures if the model does not fit."""
    if target_name == "sim":
        return None
    from ..synth.boards import BOARDS
    from ..synth.targets import fit_check, target

    chip = BOARDS[target_name].target if target_name in BOARD_TARGETS else target_name
    t = target(chip)
    report = fit_check(t, model.config, "auto", model_memories(model, target_name))
    problems = report.problems()
    if problems:
        layers = ", ".join(f"{layer['name'] or 'layer ' + str(k)}: {layer['w_beats']} w beats"
                           for k, layer in enumerate(images["layers"]))
        bits = len(images["w_words"]) * model.config.w_beat_width
        raise CompileError(
            f"the model does not fit the {t.name} ({t.device}): " + "; ".join(problems)
            + f" (weights {bits} bits in all: {layers})")
    log(f"fit check, {t.name}: {report.summary()}")
    return report.to_dict()


# -- compile ---------------------------------------------------------------------------------


def _step(log: Log, number: int, total: int, text: str, started: float) -> None:
    log(f"[{number}/{total}] {text} ({time.monotonic() - started:.1f} s)")


def _check_model_core(shape: CoreShape) -> None:
    """The model core runs the BBS engine only (DESIGN §16.3): refuse any other pattern
    before anything is read, naming the patterns it runs."""
    from ..golden.formats import FORMATS, BBSFormat

    if not isinstance(FORMATS[shape.pattern], BBSFormat):
        supported = ", ".join(repr(name) for name, fmt in FORMATS.items()
                              if isinstance(fmt, BBSFormat))
        raise CompileError(f"pattern {shape.pattern!r}: the model core runs only {supported} "
                           f"(the {shape.pattern!r} engine runs one layer at a time: bbsparse "
                           f"spmv --set pattern={shape.pattern})")


def _check_clock(options: CompileOptions) -> None:
    """`clock_mhz` needs an FPGA target and `baud` a board; on a board both must make a
    clock its PLL can and a UART rate within 2 % (refused before anything is read)."""
    if options.target == "sim":
        given = [flag for flag, value in (("--clock-mhz", options.clock_mhz),
                                          ("--baud", options.baud)) if value is not None]
        if given:
            raise CompileError(f"{' and '.join(given)}: only with an FPGA target (--target "
                               f"{', '.join(TARGETS[1:])}), not sim")
        return
    if options.target not in BOARD_TARGETS:
        if options.baud is not None:
            raise CompileError(f"--baud: only with a board target ({', '.join(BOARD_TARGETS)})"
                               f"; {options.target} is a chip, built without the UART top")
        return
    from ..synth.boards import BOARDS, model_board_clock

    # BoardError (a ValueError) naming the figure, as the board build would later.
    model_board_clock(BOARDS[options.target], options.clock_mhz, options.baud or BOARD_BAUD)


def compile_model(options: CompileOptions, out: str | Path, *, log: Log = print) -> dict:
    """Compile `options.model` into the folder `out`; return the manifest."""
    from ..onnx_import import read_model

    started = time.monotonic()
    _check_model_core(options.shape)
    _check_clock(options)
    out = Path(out)
    _check_out(out)
    fpga = options.target != "sim"
    steps = 6 if fpga else 5
    float_model = read_model(options.model)
    layers = float_model.layers
    sizes = [float_model.inputs] + [layer.weight.shape[0] for layer in layers]
    _step(log, 1, steps, f"read {options.model}: {len(layers)} linear layers "
          f"{' -> '.join(str(n) for n in sizes)}"
          + (f"; host before: {', '.join(float_model.head_ops)}" if float_model.head_ops else "")
          + (f"; host after: {', '.join(float_model.tail_ops)}" if float_model.tail_ops else ""),
          started)

    calibration = _inputs(float_model, options.calibration, "--calibration")
    relus = [layer.relu for layer in layers]
    biases = [layer.bias for layer in layers]
    names = [layer.name for layer in layers]
    weights, verdicts = prune_layers(layers, options.shape)
    accuracies = {}
    eval_x = None
    if options.labels is not None:
        eval_x = _inputs(float_model, options.finetune_x if options.finetune_x is not None
                         else options.calibration, "--finetune" if options.finetune_x
                         is not None else "--calibration")
        if len(options.labels) != len(eval_x):
            raise CompileError(f"--labels holds {len(options.labels)} labels for "
                               f"{len(eval_x)} samples")
        classes = np.unique(options.labels)
        accuracies["float"] = accuracy([layer.weight for layer in layers], biases, relus, eval_x,
                                       options.labels, classes)
        accuracies["pruned"] = accuracy(weights, biases, relus, eval_x, options.labels,
                                        classes)
    _step(log, 2, steps, "prune (" + options.shape.pattern + "): " + ", ".join(
        f"{name or k}: {verdict}" for k, (name, verdict) in enumerate(zip(names, verdicts,
                                                                          strict=True)))
        + (f"; accuracy {accuracies['float']:.2%} float, {accuracies['pruned']:.2%} pruned"
           if accuracies else ""), started)

    if options.finetune_x is not None:
        if options.labels is None:
            raise CompileError("--finetune needs --labels")
        masks = [W != 0 for W in weights]
        weights, biases = finetune(layers, weights, masks, eval_x, options.labels,
                                   epochs=options.epochs, seed=options.seed)
        accuracies["finetuned"] = accuracy(weights, biases, relus, eval_x, options.labels,
                                           np.unique(options.labels))
        _step(log, 3, steps, f"fine-tuned {options.epochs} epochs: accuracy "
              f"{accuracies['finetuned']:.2%}", started)
    else:
        _step(log, 3, steps, "no fine-tuning (--finetune not given)", started)

    quantized = quantize(weights, biases, relus, calibration, options.shape, names=names)
    model = quantized.model
    if eval_x is not None:
        predicted = _classify(quantized.run(eval_x), np.unique(options.labels))
        accuracies["int8_golden"] = float(np.mean(predicted == options.labels))
    _step(log, 4, steps, f"quantized: input 2**{quantized.input_exponent}, output "
          f"2**{quantized.output_exponent}, shifts "
          f"{[layer.out_shift for layer in model.layers]}"
          + (f"; int8 golden accuracy {accuracies['int8_golden']:.2%}"
             if "int8_golden" in accuracies else ""), started)

    from ..hdl.generate import MODEL_TOP_NAME, describe_model, model_verilog_text
    from ..hdl.model import model_images

    images = model_images(model)
    fit = _fit(model, images, options.target, log)
    description = describe_model(model)
    manifest = _manifest(options, float_model, model, quantized, verdicts, images, accuracies,
                         fit, description)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(options.model, staging / MODEL_FILE)
        (staging / f"{MODEL_TOP_NAME}.v").write_text(model_verilog_text(model))
        (staging / f"{MODEL_TOP_NAME}.json").write_text(json.dumps(description, indent=2) + "\n")
        np.savez(staging / INTEGER_MODEL, **save_integer_model(model))
        (staging / "w_rom.hex").write_text(_hex(images["w_words"], model.config.w_beat_width))
        (staging / "bias_rom.hex").write_text(
            _hex(images["bias_words"], model.config.pes * model.bias_width))
        _step(log, 5, steps, f"wrote {MODEL_TOP_NAME}.v, the manifest and the images "
              f"({manifest['memory']['w_rom_bits']} weight bits)", started)
        if fpga:
            manifest["bitstream"] = _bitstream(options, quantized, staging, log)
            _step(log, 6, steps, f"bitstream {manifest['bitstream']['file']}: Fmax "
                  f"{manifest['bitstream']['fmax_mhz']:.1f} MHz", started)
        manifest["compile_seconds"] = round(time.monotonic() - started, 1)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(staging, 0o777 & ~_umask())
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"compiled into {out} in {manifest['compile_seconds']:.1f} s")
    return manifest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CompileError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise CompileError(f"--out {out} is a folder that holds files but no {MANIFEST}: "
                           f"not replacing something that is not a compiled model")
    if not out.parent.is_dir():
        raise CompileError(f"--out {out}: folder {out.parent} does not exist")


def _replace(staging: Path, out: Path) -> None:
    """Move the finished folder into place (an older compiled folder goes only then)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _inputs(float_model, X: np.ndarray, option: str) -> np.ndarray:
    """The first linear layer's inputs for raw model inputs `X` (the host's preprocessing)."""
    X = np.atleast_2d(X)
    if X.ndim != 2:
        raise CompileError(f"{option}: need (samples, features), not shape {X.shape}")
    return np.asarray(float_model.preprocess(X), dtype=np.float64)


def _classify(outputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    from .quantize import classify

    return classify(outputs, classes)


def _manifest(options, float_model, model, quantized, verdicts, images, accuracies, fit,
              description) -> dict:
    digest = hashlib.sha256(Path(options.model).read_bytes()).hexdigest()
    layers = []
    for k, (layer, table) in enumerate(zip(model.layers, images["layers"], strict=True)):
        nonzeros = int(np.count_nonzero(layer.weights))
        layers.append({
            **table,
            "pruning": verdicts[k],
            "nonzeros": nonzeros,
            "density": nonzeros / layer.weights.size,
            "exponents": quantized.exponents[k],
        })
    return {
        "bbsparse": bbsparse_version(),
        "source": {"file": Path(options.model).name, "sha256": digest,
                   "input": float_model.input_name, "inputs": float_model.inputs,
                   "outputs": float_model.outputs, "host_before": float_model.head_ops,
                   "host_after": float_model.tail_ops},
        "target": options.target,
        "pattern": options.shape.pattern,
        "core": model.config.to_dict(),
        "scales": {"input_exponent": quantized.input_exponent,
                   "output_exponent": quantized.output_exponent,
                   "note": "x_int = clip(rint(x / 2**input_exponent)); y = y_int * "
                           "2**output_exponent"},
        "out_width": model.out_width,
        "bias_width": model.bias_width,
        "layers": layers,
        "memory": description["model"] | {"x_beats": description["derived"]["x_beats"],
                                          "y_beats": description["derived"]["y_beats"]},
        "accuracy": accuracies,
        "fit_check": fit,
        "seed": options.seed,
    }


def _bitstream(options: CompileOptions, quantized: Quantized, staging: Path, log: Log) -> dict:
    """Run the FPGA flow for the target into `staging/bitstream`; the figures it reports."""
    folder = staging / "bitstream"
    model = quantized.model
    if options.target in BOARD_TARGETS:
        from ..synth.boards import build_model_board

        report = build_model_board(model, options.target, folder,
                                   input_exponent=quantized.input_exponent,
                                   output_exponent=quantized.output_exponent,
                                   seed=options.placement_seed, log=log,
                                   baud=options.baud or BOARD_BAUD,
                                   clock_mhz=options.clock_mhz)
        bitstream = Path(report["bitstream"]).name if "bitstream" in report else None
        board = {"clock_mhz": report["clock_mhz"], "baud": report["baud"]}
    else:
        from ..hdl.model import ModelCore
        from ..synth.flow import run_flow
        from ..synth.targets import target

        result = run_flow(target(options.target), model.config, folder,
                          freq_mhz=options.clock_mhz, seed=options.placement_seed,
                          core=ModelCore(model), extra=model_memories(model, options.target))
        report = result.report
        bitstream = result.bitstream.name
        board = {}
    fmax = report["fmax"]
    return {"file": f"bitstream/{bitstream}", "report": "bitstream/report.json",
            "fmax_mhz": fmax["achieved_mhz"], "constraint_mhz": fmax["constraint_mhz"],
            "constraint_met": fmax.get("met"), **board}


def load_compiled(folder: str | Path) -> Compiled:
    """Read a folder `bbsparse compile` wrote; CompileError naming what is missing."""
    from ..onnx_import import read_model

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CompileError(f"{folder} is not a compiled model: no {MANIFEST} (run bbsparse "
                           f"compile first)")
    try:
        manifest = json.loads(manifest_path.read_text())
        model = load_integer_model(folder / INTEGER_MODEL)
    except (OSError, ValueError, KeyError) as exc:
        raise CompileError(f"{folder}: the compiled model cannot be read: {exc}") from None
    scales = manifest["scales"]
    quantized = Quantized(model, scales["input_exponent"], scales["output_exponent"],
                          [layer["exponents"] for layer in manifest["layers"]])
    float_model = read_model(str(folder / MODEL_FILE))
    return Compiled(folder, manifest, quantized, float_model)
