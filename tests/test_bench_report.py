"""The bench's report rendering (the figures themselves come from `make bench`)."""

import json
from pathlib import Path

import numpy as np
import pytest

from bbsparse import bench
from bbsparse.synth.targets import TARGETS


def fake_run(**extra):
    return {"cycles": 100, "ideal_cycles": 90, "utilization": 0.9, "utilization_steady": 1.0,
            "steady_cycles": 80, "verilator_build_seconds": 3.0,
            "sim_cycles_per_second": 2e6, **extra}


def test_markdown_and_plots(tmp_path):
    patterns = [
        {"pattern": "dense", "kind": "dense", "density": 1.0, **fake_run(),
         "speedup_over_dense": 1.0, "steady_speedup_over_dense": 1.0, "ideal_speedup": 1.0},
        {"pattern": "BBS 1/8", "kind": "bbs", "density": 0.125, **fake_run(cycles=13),
         "speedup_over_dense": 7.7, "steady_speedup_over_dense": 8.0, "ideal_speedup": 8.0},
        {"pattern": "unstructured 0.125 (banks)", "kind": "unstructured-banks",
         "density": 0.125, **fake_run(cycles=26, crossbar_stall_cycles=0),
         "speedup_over_dense": 3.8, "steady_speedup_over_dense": 4.0, "ideal_speedup": 8.0},
    ]
    scaling = [{"axis": "lanes", "lanes": lanes, "pes": 2, "cols": 1024, "rows": 256,
                "nonzeros_per_multiplier": 1024 / lanes, **fake_run(cycles=1100 // lanes)}
               for lanes in (1, 2, 4)]
    fpga = [{"target": "ecp5-25k", "lanes": 4, "pes": 7, "lut": 2000, "lut4": "950/24288",
             "logic_cells": "2000/24288", "ff": 2500,
             "dsp": "28/28", "bram": "28/56", "fmax_mhz": 131.0, "gops_sparse": 7.3,
             "gops_dense_equivalent": 58.7, "ops_per_dsp_per_cycle": 2.0,
             "step_seconds": {"yosys": 10.0, "nextpnr": 30.0}}]
    results = {"date": "2026-11-23 00:00 UTC", "machine": "x86_64, 2 cores", "seconds": 12.0,
               "array": {"rows": 1024, "cols": 1024, "lanes": 16, "pes": 2, "vectors": 2},
               "patterns": patterns, "scaling": scaling, "fpga": fpga,
               "tool_speed": {"generate_seconds": 0.3, "verilator_build_seconds_min": 2.0,
                              "verilator_build_seconds_max": 9.0,
                              "sim_cycles_per_second": 2e6}}
    text = bench.markdown(results)
    assert "Compiled model" not in text  # a results.json from before that section
    results["compiled_model"] = {"skipped": "no target of this section"}
    assert "## Compiled model" in bench.markdown(results)
    text = bench.markdown(results)
    assert "| BBS 1/8 | 0.125 | 13 | 90 |" in text
    assert ("| target | core: lanes x pes | LUT4 (Yosys) | logic cells (nextpnr) | FF | DSP |"
            in text)
    # A results.json from before the seeds, the timing flag and the w stream: "-" for those.
    assert ("| ecp5-25k | fit: 4 x 7 | 950/24288 | 2000/24288 | 2500 | 28/28 | 28/56 | "
            "131.0 | 131.0 | - | 7.3 | 58.7 | 2.00 | - | - | - |") in text
    assert "Where the weights come from" not in text
    # Today's: Fmax min / median over the seeds, the constraint and whether it is met, GOPS
    # per DSP and per 1000 LUTs, the w stream the GOPS assume and what the board gives.
    board = {"board": "ULX3S", "memory": "SDRAM, 32 MB, 16-bit bus", "bus_bits": 16,
             "clock_mhz": 166.0, "peak_gbit_per_s": 2.656, "source": "the ULX3S data"}
    fpga[0].update({"fmax_min_mhz": 128.5, "fmax_median_mhz": 131.0,
                    "fmax_seeds": {"seeds": [1, 2, 3], "fmax_mhz": [131.0, 128.5, 133.2]},
                    "constraint_mhz": 200.0, "timing_met": False,
                    "timing_reasons": ["Fmax 131.00 MHz is below the 200 MHz constraint"],
                    "gops_per_dsp": 7.3 / 28, "gops_per_1000_luts": 7.3 / 2.0,
                    "w_bits_per_beat": 308, "w_gbit_per_s_needed": 308 * 0.131,
                    "on_chip_weights": 12345, "board_memory": board})
    text = bench.markdown(results)
    assert ("| target | core: lanes x pes | LUT4 (Yosys) | logic cells (nextpnr) | FF | DSP "
            "| BRAM | Fmax min | Fmax median | constraint | GOPS sparse | GOPS dense-equivalent "
            "| ops / DSP / cycle | GOPS / DSP | GOPS / 1000 LUTs | w Gbit/s needed |") in text
    assert ("| ecp5-25k | fit: 4 x 7 | 950/24288 | 2000/24288 | 2500 | 28/28 | 28/56 | "
            "128.5 | 131.0 | 200 NOT MET | 7.3 | 58.7 | 2.00 | 0.261 | 3.65 | 40.35 |") in text
    assert "min and median over 3 placement seeds" in text
    assert "Timing not met: ecp5-25k: Fmax 131.00 MHz is below the 200 MHz constraint." in text
    assert ("- ecp5-25k: 308 bits a cycle = 40.35 Gbit/s; on chip (the compiled-model path's "
            "weight ROM in the block RAM the core leaves) 12,345 weights; from the ULX3S's "
            "SDRAM, 32 MB, 16-bit bus: 16 bits x 166 MHz = 2.66 Gbit/s peak, 7 % of the "
            "stream (the ULX3S data).") in text
    assert "nextpnr 30.0 s" in text
    files = bench.plot(patterns, scaling, tmp_path)
    assert all((tmp_path / name).stat().st_size > 1000 for name in files)
    json.dumps(results)  # the results are plain JSON


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_steps_say_which_of_how_many_the_time_so_far_and_the_time_left():
    lines = []
    clock = FakeClock()
    steps = bench.Steps("bench", ["sim", "sim", "sim", "fpga ecp5-25k", "sim"],
                        {"fpga ecp5-25k": 60.0}, log=lines.append, clock=clock)
    steps.begin("patterns: dense")
    clock.now = 10
    steps.begin("patterns: BBS 4/8")
    clock.now = 30
    steps.begin("patterns: BBS 2/8")
    clock.now = 100
    steps.begin("FPGA ecp5-25k: 4 lanes x 7 PEs through Yosys and nextpnr")
    clock.now = 175
    steps.begin("FPGA ecp5-25k: utilization of that configuration on the RTL")
    assert lines == [
        "bench [1/5] patterns: dense ... elapsed 0 s, time left estimated after the first step",
        # A sim step: the mean of those finished; the FPGA run: its prior, 60 s.
        "bench [2/5] patterns: BBS 4/8 ... elapsed 10 s, about 1 min 30 s left",
        "bench [3/5] patterns: BBS 2/8 ... elapsed 30 s, about 1 min 30 s left",
        "bench [4/5] FPGA ecp5-25k: 4 lanes x 7 PEs through Yosys and nextpnr ... elapsed "
        "1 min 40 s, about 1 min 33 s left",
        "bench [5/5] FPGA ecp5-25k: utilization of that configuration on the RTL ... elapsed "
        "2 min 55 s, about 33 s left",
    ]
    with pytest.raises(ValueError, match="more steps than the 5 planned"):
        steps.begin("one too many")


def test_the_plan_counts_every_run():
    steps = bench.plan(["ice40-up5k"], Path("/nonexistent"), reuse=False)
    sims = len(bench.pattern_cases()) + 8 + len(bench.scaling_grid())
    assert steps.plan == ["sim"] * sims + ["fpga ice40-up5k", "sim", "model export",
                                           "compile ice40-up5k", "model run"]
    # No earlier run to go by: about dsps ** 1.2 seconds a seed (8 SB_MAC16 on the UP5K),
    # the extra seeds sharing the cores.
    assert steps.priors["fpga ice40-up5k"] == pytest.approx(8 ** 1.2 * bench.FPGA_SEED_FACTOR)
    assert steps.priors["compile ice40-up5k"] == bench.COMPILED_SECONDS["ice40-up5k"]
    # A target the compiled-model section does not use adds only its own FPGA run.
    steps = bench.plan(["ecp5-45k"], Path("/nonexistent"), reuse=False)
    assert steps.plan == ["sim"] * sims + ["fpga ecp5-45k", "sim"]
    assert bench.plan([], Path("/nonexistent"), reuse=False).plan == ["sim"] * sims


def test_an_earlier_compile_sets_the_estimate(tmp_path):
    folder = tmp_path / bench.COMPILED_FOLDER / "ecp5-25k"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"compile_seconds": 77.5}))
    assert bench.compiled_seconds(tmp_path, "ecp5-25k") == 77.5
    assert bench.compiled_seconds(tmp_path, "ice40-up5k") == bench.COMPILED_SECONDS["ice40-up5k"]


# -- the compiled-model section ---------------------------------------------------------------

def fake_description(core_latency=13, output_latency=5):
    """bbs_model.json of a 64-32-16-10 model on 8 lanes x 1 PE, BBS 2/8."""
    layers = [{"name": "MatMul", "rows": 32, "cols": 64, "x_beats": 8, "w_beats": 64},
              {"name": "MatMul1", "rows": 16, "cols": 32, "x_beats": 8, "w_beats": 32},
              {"name": "MatMul2", "rows": 10, "cols": 16, "x_beats": 8, "w_beats": 20}]
    return {"model": {"layers": layers},
            "derived": {"core_latency": core_latency, "output_latency": output_latency}}


def fake_compiled_run(cycles, fmax=50.0):
    return {"cycles_per_inference": cycles, "fmax_mhz": fmax, "golden_mismatches": 0,
            "error": False, "accuracy_float": 0.9733, "accuracy_golden": 0.9644,
            "accuracy": 0.9644}


def test_compiled_figures_ideal_fill_overhead_and_ratios():
    cpu = {"onnxruntime_us": 40.0, "numpy_int8_us": 25.0}
    # ideal 8+64 + 8+32 + 8+20 = 140; fill 3 layers x (13 + 5) = 54; 194 expected.
    r = bench.compiled_figures("ice40-up5k", 8, 1, fake_compiled_run(200), fake_description(),
                               cpu)
    assert (r["ideal_cycles"], r["fill_cycles"]) == (140, 54)
    assert r["overhead_beyond_ideal_plus_fill"] == pytest.approx(6 / 194)
    assert r["within_limit_of_ideal_plus_fill"]
    assert r["on_chip_latency_us"] == pytest.approx(4.0)  # 200 cycles at 50 MHz
    assert r["onnxruntime_over_on_chip"] == pytest.approx(10.0)
    assert r["numpy_over_on_chip"] == pytest.approx(6.25)
    assert [layer["w_beats"] for layer in r["layers"]] == [64, 32, 20]
    assert r["accuracy"] == {"float": 0.9733, "int8_golden": 0.9644, "rtl": 0.9644}
    # 11 % beyond ideal + fill is reported, not hidden; below it counts as within too.
    late = bench.compiled_figures("x", 8, 1, fake_compiled_run(216), fake_description(), cpu)
    assert late["overhead_beyond_ideal_plus_fill"] == pytest.approx(22 / 194)
    assert not late["within_limit_of_ideal_plus_fill"]
    early = bench.compiled_figures("x", 8, 1, fake_compiled_run(190), fake_description(), cpu)
    assert early["within_limit_of_ideal_plus_fill"]
    # Without an Fmax (a sim folder) there is no on-chip time and no ratio.
    sim = bench.compiled_figures("x", 8, 1, fake_compiled_run(200, fmax=None),
                                 fake_description(), cpu)
    assert sim["on_chip_latency_us"] is None and sim["numpy_over_on_chip"] is None


def test_compiled_section_in_markdown():
    cpu = {"onnxruntime_us": 40.0, "numpy_int8_us": 25.0}
    targets = [bench.compiled_figures("ice40-up5k", 8, 1, fake_compiled_run(200),
                                      fake_description(), cpu),
               bench.compiled_figures("ecp5-25k", 8, 2, fake_compiled_run(216, fmax=108.0),
                                      fake_description(), cpu)]
    section = {"model": "an MLP", "pattern": "BBS 2/8", "finetune_epochs": 10,
               "train_images": 1347, "test_images": 450, "cpu": "a CPU", "targets": targets}
    text = "\n".join(bench.compiled_markdown(section))
    assert ("| ice40-up5k | 8 x 1 | 200 | 140 + 54 | +3.1 % | 50.0 | 4.00 | 40.0 | 25.0 | "
            "10.0x | 6.2x | 97.33 / 96.44 / 96.44 % | 0 |") in text
    assert ("| ecp5-25k | 8 x 2 | 216 | 140 + 54 | +11.3 % | 108.0 | 2.00 | 40.0 | 25.0 | "
            "20.0x |") in text
    assert "within 5 % of ideal + fill: ice40-up5k yes (+3.1 %); ecp5-25k NO (+11.3 %)." in text
    assert bench.compiled_summary(targets[0]) == (
        "ice40-up5k: 200 cycles at 50.0 MHz = 4.00 µs on chip; onnxruntime 40.0 µs (10.0x), "
        "NumPy int8 25.0 µs (6.2x); ideal 140 + fill 54: overhead +3.1 %")
    skipped = "\n".join(bench.compiled_markdown({"skipped": "skl2onnx is not installed"}))
    assert "Skipped: skl2onnx is not installed." in skipped
    assert bench.compiled_markdown(None) == []  # a results.json from before the section
    json.dumps(section)


def test_compiled_section_skips_without_a_target_or_skl2onnx(tmp_path, monkeypatch):
    lines = []
    result = bench.compiled_model_runs(["ecp5-45k"], tmp_path, log=lines.append)
    assert "ice40-up5k, ecp5-25k" in result["skipped"] and not lines
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skl2onnx" else real(name, *a))
    result = bench.compiled_model_runs(["ice40-up5k"], tmp_path, log=lines.append)
    assert result["skipped"].startswith("skl2onnx is not installed")
    assert lines == [f"bench: {result['skipped']}"]
    assert not any(tmp_path.iterdir())  # nothing trained, compiled or written


def test_median_microseconds_times_only_after_the_warm_up():
    clock = FakeClock()
    calls = []

    def call():
        calls.append(clock.now)
        clock.now += 1e-6 * (len(calls) if len(calls) > 2 else 1000)  # slow warm-up

    assert bench.median_microseconds(call, repeats=5, warmup=2, clock=clock) == \
        pytest.approx(5.0)  # calls 3..7 take 3..7 µs: median 5
    assert len(calls) == 7
    with pytest.raises(ValueError, match="repeats must be at least 1, not 0"):
        bench.median_microseconds(call, repeats=0)


def test_main_stores_and_prints_the_compiled_section(tmp_path, monkeypatch, capsys):
    """bench.main with every measurement replaced: the compiled-model section reaches
    results.json and results.md, after the FPGA runs, with the steps planned for it."""
    patterns = [{"pattern": "dense", "kind": "dense", "density": 1.0, **fake_run(),
                 "speedup_over_dense": 1.0, "steady_speedup_over_dense": 1.0,
                 "ideal_speedup": 1.0}]
    cpu = {"onnxruntime_us": 40.0, "numpy_int8_us": 25.0}
    section = {"model": "an MLP", "pattern": "BBS 2/8", "finetune_epochs": 10,
               "train_images": 1347, "test_images": 450, "cpu": "a CPU",
               "targets": [bench.compiled_figures("ice40-up5k", 8, 1, fake_compiled_run(200),
                                                  fake_description(), cpu)]}
    order = []

    def compiled(targets, out, steps):
        order.append("compiled")
        assert list(targets) == ["ice40-up5k"] and steps.plan[-3:] == [
            "model export", "compile ice40-up5k", "model run"]
        return section

    monkeypatch.setattr(bench, "pattern_runs", lambda *a: patterns)
    monkeypatch.setattr(bench, "scaling_runs", lambda *a: [])
    monkeypatch.setattr(bench, "fpga_runs", lambda *a: order.append("fpga") or [])
    monkeypatch.setattr(bench, "compiled_model_runs", compiled)
    monkeypatch.setattr(bench, "plot", lambda *a: [])
    monkeypatch.setattr(bench, "fpga_seconds", lambda *a: 10.0)
    # The cbs grid (its own report, bench_cbs.py) is minutes of simulation: not this test's.
    import bbsparse.bench_cbs
    monkeypatch.setattr(bbsparse.bench_cbs, "main", lambda *a, **k: order.append("cbs"))
    assert bench.main(tmp_path, targets=["ice40-up5k"]) == 0
    assert order == ["fpga", "compiled", "cbs"]
    stored = json.loads((tmp_path / "results.json").read_text())["compiled_model"]
    assert stored["targets"][0]["on_chip_latency_us"] == pytest.approx(4.0)
    assert "| ice40-up5k | 8 x 1 | 200 | 140 + 54 |" in (tmp_path / "results.md").read_text()
    assert "| ice40-up5k | 8 x 1 | 200 | 140 + 54 |" in capsys.readouterr().out


def _fake_fpga(monkeypatch, report, calls, stop=None):
    """bench.fpga_runs' flow answering `report` (or raising stop[target name]), its cores
    8 x 1, its simulation 50 % utilized in steady state; (target name, keywords) of each
    flow call go to `calls`."""
    from bbsparse.golden.config import Config
    from bbsparse.synth import flow

    def run_flow(target, config, folder, **kwargs):
        calls.append((target.name, kwargs))
        if target.name in (stop or {}):
            raise stop[target.name]
        return flow.FlowResult(report, folder / "report.json", folder / "x.bin")

    monkeypatch.setattr(flow, "run_flow", run_flow)
    monkeypatch.setattr(bench, "_core_config",
                        lambda name, core="fit": Config(lanes=8, pes=1))
    monkeypatch.setattr(bench, "_run", lambda *a, **k: {"utilization_steady": 0.5,
                                                        "utilization": 0.4})


def test_fpga_runs_report_seeds_timing_gops_per_dsp_and_the_w_stream(tmp_path, monkeypatch):
    """bench.fpga_runs with the flow and the simulation replaced: 3 seeds asked of the flow,
    GOPS at the median Fmax, per DSP and per 1000 LUTs, the timing flag and the w stream."""
    from bbsparse.golden.config import Config
    from tests.test_synth_report import make_report

    calls = []
    report = make_report("ice40-up5k")  # 8 x 1 on the UP5K, Fmax 48.19 against 50
    report["fmax_seeds"] = {"seeds": [1, 2, 3], "fmax_mhz": [48.19, 46.0, 50.0],
                            "min_mhz": 46.0, "median_mhz": 48.19, "max_mhz": 50.0}

    _fake_fpga(monkeypatch, report, calls)
    [r] = bench.fpga_runs(["ice40-up5k"], tmp_path, reuse=False, seed=7)
    assert calls == [("ice40-up5k", {"seeds": bench.FPGA_SEEDS, "workers": bench.FPGA_WORKERS,
                                     "placer": "heap", "dsp_floorplan": False,
                                     "pnr_time_limit": None})]
    assert r["core"] == "fit"
    assert (r["fmax_min_mhz"], r["fmax_median_mhz"], r["fmax_mhz"]) == (46.0, 48.19, 48.19)
    gops = 2 * 8 * 0.5 * 48.19 / 1000
    assert r["gops_sparse"] == pytest.approx(gops)
    assert r["gops_per_dsp"] == pytest.approx(gops / 8)
    assert r["gops_per_1000_luts"] == pytest.approx(gops / 0.406)
    assert r["timing_met"] is False and r["constraint_mhz"] == 50.0
    bits = Config(lanes=8, pes=1).w_beat_width
    assert r["w_bits_per_beat"] == bits
    assert r["w_gbit_per_s_needed"] == pytest.approx(bits * 48.19 / 1000)
    assert r["board_memory"]["board"] == "iCEBreaker" and r["on_chip_weights"] > 0
    json.dumps(r)


def test_a_core_stopped_at_the_time_limit_leaves_a_stopped_row(tmp_path, monkeypatch,
                                                              capsys):
    """`--pnr-time-limit` reaches the flow in seconds; a core whose first seed is stopped
    gets a row that says so and the bench goes on to the next; a stopped further seed shows
    as the min and is named under the table."""
    from bbsparse.synth import flow
    from bbsparse.synth.tools import TimeLimitError
    from tests.test_synth_report import make_report

    calls = []
    report = make_report("ice40-up5k")
    report["fmax_seeds"] = flow.seed_figures({1: 48.19, 2: 46.0}, {3: "nextpnr-ice40 stopped "
                                                                   "after the time limit of "
                                                                   "1 min 30 s, in placing"})
    reason = ("nextpnr-ecp5 stopped after the time limit of 1 min 30 s, in routing (router1) "
              "#9: 40/100 arcs left (log: x/nextpnr.log)")

    _fake_fpga(monkeypatch, report, calls, stop={"ecp5-25k": TimeLimitError(reason)})
    rows = bench.fpga_runs(["ice40-up5k", "ecp5-25k"], tmp_path, reuse=False, seed=7,
                           pnr_time_limit=90.0)
    assert [(name, kwargs["pnr_time_limit"]) for name, kwargs in calls] == [
        ("ice40-up5k", 90.0), ("ecp5-25k", 90.0), ("ecp5-25k", 90.0)]
    assert [(r["target"], r["core"], r.get("stopped")) for r in rows] == [
        ("ice40-up5k", "fit", None), ("ecp5-25k", "fit", reason),
        ("ecp5-25k", "default", reason)]
    assert "bench: FPGA ecp5-25k: " + reason + "; no figures for it" in capsys.readouterr().out
    up5k = rows[0]
    # A seed stopped of three: the min is unknown, the median the lower of the others.
    assert (up5k["fmax_min_mhz"], up5k["fmax_median_mhz"]) == (None, 46.0)
    assert up5k["gops_sparse"] == pytest.approx(2 * 8 * 0.5 * 46.0 / 1000)
    assert up5k["fmax_seeds"]["stopped"][0]["seed"] == 3
    json.dumps(rows)
    text = "\n".join(bench.fpga_markdown(rows))
    assert "| ecp5-25k | fit: 8 x 1 | - | - | - | - | - | stopped | stopped | - | - | - | - " \
           "| - | - | - |" in text
    assert "| ice40-up5k | fit: 8 x 1 | " in text and " | stopped | 46.0 | 50 NOT MET | " in text
    assert ("Stopped at the time limit (`bbsparse bench --pnr-time-limit`; a seed stopped "
            "ranks below every seed that finished, so its min reads stopped, and its median "
            "too when the median falls on it): ecp5-25k: " + reason + ". ecp5-25k (default "
            "core): " + reason + ". ice40-up5k, seed 3: nextpnr-ice40 stopped after the time "
            "limit of 1 min 30 s, in placing.") in text
    # A median on a stopped seed: no GOPS, "-" in the table.
    report["fmax_seeds"] = flow.seed_figures({1: 48.19}, {2: "a", 3: "b"})
    [r] = bench.fpga_runs(["ice40-up5k"], tmp_path, reuse=False, seed=7)
    assert r["fmax_median_mhz"] is None and r["gops_sparse"] is None
    assert r["w_gbit_per_s_needed"] is None and r["gops_per_dsp"] is None
    assert " | stopped | stopped | 50 NOT MET | - | - | 1.00 | - | - | - |" in \
        "\n".join(bench.fpga_markdown([r]))


def test_a_reused_core_says_so(tmp_path, monkeypatch):
    """A core whose earlier report `--reuse-synth` takes runs no flow; its row names the
    report and results.md lists it as reused (its seeds and tool times are that run's)."""
    from tests.test_synth_report import make_report

    calls = []
    report = make_report("ice40-up5k")
    report["fmax_seeds"] = {"seeds": [1, 2, 3], "fmax_mhz": [48.19, 46.0, 50.0],
                            "min_mhz": 46.0, "median_mhz": 48.19, "max_mhz": 50.0}
    _fake_fpga(monkeypatch, report, calls)
    earlier = tmp_path / "report.json"
    earlier.write_text(json.dumps(report))
    monkeypatch.setattr(bench, "_reusable", lambda *a, **k: earlier)
    [r] = bench.fpga_runs(["ice40-up5k"], tmp_path, reuse=True, seed=7)
    assert calls == [] and r["reused"] == str(earlier)
    assert r["fmax_median_mhz"] == 48.19
    text = "\n".join(bench.fpga_markdown([r]))
    assert "Reused (`--reuse-synth`: the same configuration, synthesis top and Yosys script " \
           "as an earlier run's, whose report, seeds and tool times these are): " \
           "ice40-up5k." in text


def test_bench_takes_a_time_limit_in_minutes(tmp_path, monkeypatch, capsys):
    from bbsparse.cli import main

    seen = []
    monkeypatch.setattr(bench, "main", lambda out, **kwargs: seen.append(kwargs) or 0)
    assert main(["bench", "--targets", "none", "--out", str(tmp_path / "b"),
                 "--pnr-time-limit", "1.5"]) == 0
    assert main(["bench", "--out", str(tmp_path / "b"), "--reuse-synth"]) == 0
    assert [k["pnr_time_limit"] for k in seen] == [90, None]
    # results.md names the command line the figures come from.
    assert [k["command"] for k in seen] == [
        f"bbsparse bench --out {tmp_path / 'b'} --targets none --pnr-time-limit 1.5",
        f"bbsparse bench --out {tmp_path / 'b'} --reuse-synth"]
    assert main(["bench", "--targets", "none", "--pnr-time-limit", "0"]) == 2
    assert "--pnr-time-limit: must be a number of minutes above 0, not '0'" \
        in capsys.readouterr().err


def test_fpga_runs_add_the_default_and_mix_cores_after_the_fits():
    assert bench.fpga_cores(["ice40-up5k", "ecp5-25k", "ecp5-85k"]) == [
        ("ice40-up5k", "fit"), ("ecp5-25k", "fit"), ("ecp5-85k", "fit"),
        ("ecp5-25k", "default"), ("ecp5-85k", "mix")]
    assert bench.fpga_cores(["ice40-up5k"]) == [("ice40-up5k", "fit")]
    # The default core is the target's; the fit is over the target's fit micro-architecture.
    assert bench._core_config("ecp5-25k", "default").to_dict() == \
        TARGETS["ecp5-25k"].default_config().to_dict()
    for key, value in TARGETS["ecp5-25k"].fit_core.items():
        assert getattr(bench._core_config("ecp5-25k"), key) == value
    assert bench._folder(Path("b"), "ecp5-25k", "default") == Path("b/synth/ecp5-25k-default")
    # The mix is what `bbsparse synth --fit --fit-multipliers mix` builds: every DSP block,
    # then LUT multipliers, over the target's fit_core_mix.
    target = TARGETS["ecp5-85k"]
    mix = bench._core_config("ecp5-85k", "mix")
    fit = bench._core_config("ecp5-85k")
    assert mix.lut_multipliers > 0 and mix.multipliers - mix.lut_multipliers == target.dsps
    assert mix.multipliers > fit.multipliers and fit.lut_multipliers == 0
    for key, value in {**target.fit_core, **target.fit_core_mix}.items():
        assert getattr(mix, key) == value
    assert bench._core_label("ecp5-85k", "mix") == "ecp5-85k (mix core)"


def test_cbs_grid_runs_every_engine_and_renders_the_table(tmp_path, monkeypatch):
    """bench_cbs.main with the RTL run replaced (the engines themselves are tested in
    test_rtl_cbs.py and friends): each density runs BBS, unstructured and cbs at every zero
    fraction, with the zeros really in x, and the table sets each against BBS."""
    from bbsparse import bench_cbs

    seen = []

    def fake_run(config, W, X):
        zeros = float(np.mean(X == 0))
        seen.append((config.pattern, config.nnz_per_bank, zeros))
        # cycles: a stand-in that grows with the nonzeros the engine streams.
        nonzero_x = 1.0 - zeros if config.pattern == "cbs" else 1.0
        return {"cycles": int(1000 * config.nnz_per_bank * nonzero_x) + 7}

    monkeypatch.setattr(bench_cbs, "_run", fake_run)
    section = bench_cbs.main(tmp_path, rows=16, cols=32, lanes=4, pes=1, digits=False,
                             log=lambda m: None)
    assert [p for p, _, _ in seen] == ["bbs", "unstructured", "cbs", "cbs", "cbs", "cbs"] * 3
    assert sorted({z for p, _, z in seen if p == "cbs"}) == [0.0, 0.25, 0.5, 0.75]
    assert all(z == 0.0 for p, _, z in seen if p != "cbs")
    half = next(r for r in section["grid"] if r["engine"] == "cbs" and r["density"] == 0.5
                and r["zero_fraction"] == 0.5)
    assert half["cycles_vs_bbs"] == pytest.approx((2000 + 7) / (4000 + 7))
    text = (tmp_path / "cbs.md").read_text()
    assert "| 0.5 | 4007 | 4007 (1.00x) | 4007 (1.00x) | 3007 (0.75x) | 2007 (0.50x) " in text
    assert json.loads((tmp_path / "cbs.json").read_text())["grid"] == section["grid"]


def test_reuse_synth_takes_a_report_only_for_the_same_verilog(tmp_path):
    """--reuse-synth reuses a target's report when its configuration, the synthesis top's
    Verilog and the Yosys script are the ones of today's RTL and flow: a changed RTL (or
    top, or synthesis commands) is a new run."""
    from bbsparse.golden.config import Config
    from bbsparse.synth.flow import SYNTH_SCRIPT, TOP_NAME, synth_script, synth_top_verilog

    config = Config(lanes=2, pes=1, bank_size=4, nnz_per_bank=2, cols=32)
    folder = tmp_path / "synth" / "ice40-up5k"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"parameters": config.to_dict()}))
    _, text = synth_top_verilog(TARGETS["ice40-up5k"], config)
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None  # no Verilog
    (folder / f"{TOP_NAME}.v").write_text(text)
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None  # no script
    script = synth_script(TARGETS["ice40-up5k"])
    (folder / SYNTH_SCRIPT).write_text(script.replace("proc\n", ""))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None  # another script
    (folder / SYNTH_SCRIPT).write_text(script)
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) == folder / "report.json"
    assert bench._reusable(tmp_path, "ice40-up5k", config, False) is None
    # A report of another placer than the core's is a new run (the mix places with
    # nextpnr's static placer, every other core with HeAP, the default a report without
    # "placer" had).
    assert bench._placer("mix") == "static" and bench._placer("fit") == "heap"
    report = json.loads((folder / "report.json").read_text())
    (folder / "report.json").write_text(json.dumps({**report, "placer": "static"}))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None
    (folder / "report.json").write_text(json.dumps({**report, "placer": "heap"}))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) == folder / "report.json"
    # So is a report of another DSP floorplan than the core's (the 85k's mix has one).
    assert bench._floorplan("ecp5-85k", "mix") and not bench._floorplan("ecp5-85k", "fit")
    assert not bench._floorplan("ice40-up5k", "mix")  # no site list
    (folder / "report.json").write_text(json.dumps({**report, "dsp_floorplan": True}))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None
    (folder / "report.json").write_text(json.dumps({**report, "dsp_floorplan": False}))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) == folder / "report.json"
    other = Config(lanes=2, pes=1, bank_size=4, nnz_per_bank=2, cols=32, out_shift=1)
    assert bench._reusable(tmp_path, "ice40-up5k", other, True) is None
    (folder / f"{TOP_NAME}.v").write_text(text.replace("endmodule", "endmodule // old", 1))
    assert bench._reusable(tmp_path, "ice40-up5k", config, True) is None
