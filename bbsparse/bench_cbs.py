"""The bench section of the column engine (DESIGN §9.4): weight and activation sparsity
together, measured on the RTL beside BBS and the unstructured engine on the same
multipliers.

- **grid**: one 1024 x 1024 int8 matrix, 16 lanes x 2 PEs, 2 vectors; at weight densities
  1/2, 1/4, 1/8 the BBS engine (row banks of 8), the cbs engine (column banks of 8) at
  activation zero fractions 0, 0.25, 0.5 and 0.75, and the unstructured engine (crossbar,
  bank-ordered stream). BBS and unstructured do not skip zero activations: their cycles do
  not depend on x, and they run once per density on the same zero-free vectors.
- **digits**: scikit-learn's digits, the demo's 64-256-10 MLP (``bbsparse.demo_digits``),
  trained once; both layers pruned per pattern (BBS, cbs, unstructured) at densities 1/2,
  1/4, 1/8 and fine-tuned under the mask; the float and int8 (golden) test accuracies; and
  layer 2 (10 x 256) run on the RTL of each engine with the real int8 hidden activations
  after the ReLU (their measured zero fraction reported), 8 lanes x 2 PEs like the demo.

Every cycle count is the RTL's (tb/harness.py), every result checked against the golden
model. Writes ``cbs.json`` and ``cbs.md`` into the bench's folder and returns the figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .golden import prune, spmv
from .golden.config import Config

__all__ = ["DENSITIES", "ZERO_FRACTIONS", "digits_runs", "grid_runs", "main", "markdown"]

DENSITIES = (4, 2, 1)  # nonzeros per bank of 8
ZERO_FRACTIONS = (0.0, 0.25, 0.5, 0.75)
BANK = 8


def _log(message: str) -> None:
    print(message, flush=True)


def _run(config: Config, W, X) -> dict:
    from .tb.harness import run_spmv

    result = run_spmv(config, W, X, log=lambda m: None)
    report = dict(result.report)
    report["exact"] = bool(np.array_equal(result.y, spmv.spmv(config, W, X)))
    if not report["exact"] or report["error"]:
        raise RuntimeError(f"RTL result differs from golden for {config}")
    keep = ("cycles", "steady_cycles", "predicted_cycles", "pipeline_latency", "utilization",
            "useful_macs", "w_beats", "exact", "verilator_build_seconds")
    return {key: report[key] for key in keep if key in report}


def _with_zeros(X: np.ndarray, fraction: float, rng) -> np.ndarray:
    """X with exactly round(fraction * cols) zeros per vector, at random places (X itself
    holds no zero)."""
    X = X.copy()
    for row in X:
        row[rng.permutation(row.size)[:round(fraction * row.size)]] = 0
    return X


def grid_runs(rows=1024, cols=1024, lanes=16, pes=2, vectors=2, seed=7, log=_log) -> list:
    rng = np.random.default_rng(seed)
    dense = rng.integers(-128, 128, size=(rows, cols))
    X = rng.integers(1, 128, size=(vectors, cols)) * rng.choice([-1, 1], size=(vectors, cols))
    runs = []
    for nnz in DENSITIES:
        density = nnz / BANK
        common = dict(lanes=lanes, pes=pes, cols=cols, bank_size=BANK, nnz_per_bank=nnz)
        W = prune.PRUNERS["bbs"](dense, bank_size=BANK, nnz_per_bank=nnz)
        log(f"bench cbs: BBS {nnz}/{BANK}")
        runs.append({"engine": "bbs", "density": density, "zero_fraction": None,
                     **_run(Config(**common), W, X)})
        W = prune.PRUNERS["unstructured"](dense, nnz=rows * cols * nnz // BANK)
        log(f"bench cbs: unstructured {density:g}")
        runs.append({"engine": "unstructured", "density": density, "zero_fraction": None,
                     **_run(Config(**{**common, "pattern": "unstructured"}), W, X)})
        W = prune.PRUNERS["cbs"](dense, bank_size=BANK, nnz_per_bank=nnz)
        for fraction in ZERO_FRACTIONS:
            log(f"bench cbs: cbs {nnz}/{BANK}, {fraction:g} of x zero")
            Xz = _with_zeros(X, fraction, rng)
            runs.append({"engine": "cbs", "density": density, "zero_fraction": fraction,
                         **_run(Config(**{**common, "pattern": "cbs"}), W, Xz)})
    for run in runs:
        bbs = next(r for r in runs if r["engine"] == "bbs" and r["density"] == run["density"])
        run["cycles_vs_bbs"] = run["cycles"] / bbs["cycles"]
    return runs


def _pruner(engine: str, nnz: int):
    # cbs: layer 2 has 10 rows, so its last column bank is 2 rows, pruned as if padded.
    if engine in ("bbs", "cbs"):
        return lambda W: prune.PRUNERS[engine](W, bank_size=BANK, nnz_per_bank=nnz)
    return lambda W: prune.PRUNERS["unstructured"](W, nnz=round(nnz / BANK * W.size))


def digits_runs(seed: int = 0, log=_log) -> dict:
    from . import demo_digits as demo

    X_train, y_train, X_test, y_test = demo.load_split()
    W1, W2 = demo.init_weights(seed)
    W1, W2 = demo.train(W1, W2, X_train, y_train, epochs=demo.TRAIN_EPOCHS,
                        rate=demo.LEARNING_RATE, seed=seed + 1)
    rows = []
    for nnz in DENSITIES:
        for number, engine in enumerate(("bbs", "cbs", "unstructured")):
            log(f"bench cbs: digits, {engine} {nnz}/{BANK}")
            prune_layer = _pruner(engine, nnz)
            P1, P2 = prune_layer(W1), prune_layer(W2)
            P1, P2 = demo.train(P1, P2, X_train, y_train, epochs=demo.FINETUNE_EPOCHS,
                                rate=demo.FINETUNE_RATE, seed=seed + 2 + number,
                                masks=[P1 != 0, P2 != 0])
            net = demo.quantize(P1, P2, X_train)
            hidden, logits = demo.golden_inference(net, X_test)
            row = {"engine": engine, "density": nnz / BANK,
                   "float_accuracy": demo.float_accuracy(P1, P2, X_test, y_test),
                   "int8_accuracy": float(np.mean(demo.classify(logits) == y_test)),
                   "hidden_zero_fraction": float(np.mean(hidden == 0))}
            # Layer 2 on the RTL of its engine, x = the real hidden activations after ReLU.
            config = Config(lanes=demo.LANES, pes=demo.PES, bank_size=BANK, nnz_per_bank=nnz,
                            cols=demo.HIDDEN, pattern=engine)
            batch = hidden[:16]
            row["layer2"] = {"vectors": len(batch),
                             "zero_fraction": float(np.mean(batch == 0)),
                             **_run(config, net.W2, batch)}
            rows.append(row)
    return {"rows": rows, "test_images": len(y_test),
            "hidden_zero_fraction": float(np.mean([r["hidden_zero_fraction"] for r in rows]))}


def markdown(section: dict) -> str:
    lines = ["## Weight and activation sparsity together: BBS, cbs with skipping, "
             "unstructured", "",
             f"One {section['array']['rows']} x {section['array']['cols']} int8 matrix, "
             f"{section['array']['lanes']} lanes x {section['array']['pes']} PEs, "
             f"{section['array']['vectors']} vectors; cycles from the RTL (first x beat to last "
             "y beat), every result exact. BBS and unstructured do not skip zero activations "
             "(their cycles do not depend on x); cbs streams only the columns of nonzero "
             "activations (DESIGN §9.4).", "",
             "| weight density | BBS | unstructured | cbs, x 0 % zero | 25 % | 50 % | 75 % |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    grid = section["grid"]
    for density in sorted({r["density"] for r in grid}, reverse=True):
        at = [r for r in grid if r["density"] == density]
        bbs = next(r for r in at if r["engine"] == "bbs")
        uns = next(r for r in at if r["engine"] == "unstructured")
        cells = [f"{r['cycles']} ({r['cycles_vs_bbs']:.2f}x)" for r in at
                 if r["engine"] == "cbs"]
        lines.append(f"| {density:g} | {bbs['cycles']} | {uns['cycles']} "
                     f"({uns['cycles_vs_bbs']:.2f}x) | " + " | ".join(cells) + " |")
    digits = section.get("digits")
    if digits:
        lines += ["", f"Digits MLP (64-256-10, {digits['test_images']} test images): both "
                  "layers pruned to the density and fine-tuned under the mask; layer 2 "
                  "(10 x 256) on the RTL, 8 lanes x 2 PEs, 16 test images, x = the int8 "
                  "hidden activations after the ReLU.", "",
                  "| density | pattern | float acc. | int8 acc. | hidden zeros | layer-2 cycles "
                  "| vs BBS |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in digits["rows"]:
            bbs = next(b for b in digits["rows"]
                       if b["engine"] == "bbs" and b["density"] == r["density"])
            lines.append(
                f"| {r['density']:g} | {r['engine']} | {100 * r['float_accuracy']:.1f} % | "
                f"{100 * r['int8_accuracy']:.1f} % | {100 * r['hidden_zero_fraction']:.0f} % | "
                f"{r['layer2']['cycles']} | "
                f"{r['layer2']['cycles'] / bbs['layer2']['cycles']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(out: Path, *, rows=1024, cols=1024, lanes=16, pes=2, vectors=2, seed=7,
         digits: bool = True, log=_log) -> dict:
    start = time.monotonic()
    section = {"array": {"rows": rows, "cols": cols, "lanes": lanes, "pes": pes,
                         "vectors": vectors, "seed": seed},
               "grid": grid_runs(rows, cols, lanes, pes, vectors, seed, log)}
    if digits:
        section["digits"] = digits_runs(log=log)
    section["seconds"] = time.monotonic() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "cbs.json").write_text(json.dumps(section, indent=2) + "\n")
    (out / "cbs.md").write_text(markdown(section))
    log(markdown(section))
    return section


if __name__ == "__main__":  # python -m bbsparse.bench_cbs OUT
    import sys

    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/bench"))
