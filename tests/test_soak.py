"""The soak (tb/soak.py, ``bbsparse verify``): a 300-case slice on a fixed pool, cases that
replay from (seed, index) alone, and a checker that reports what is wrong with the command
that replays it."""

import dataclasses
import json
import os

import numpy as np
import pytest

from bbsparse.cliutil import CliError, Parser
from bbsparse.hdl.engines import ENGINES
from bbsparse.tb import soak
from bbsparse.tb.harness import run_spmv
from bbsparse.tb.soak import Plan, check_case, draw_case, exact_cycles_claimed, run_case
from bbsparse.verify import add_verify

# The first six configurations of seed 10076's pool: both engines, lanes 1 to 5, one to four
# PEs, dense banks and banks of one nonzero, widths 2 to 16, wrapping, saturating, shifting,
# ReLU, one to three tree levels a stage, at most 8 multipliers each, so that they build in
# about 20 s here.
SLICE = Plan(seed=10076, configs=6)
REPLAY = f"bbsparse verify --seed {SLICE.seed} --case"


def jobs() -> int:
    return min(2, os.cpu_count() or 1)


def verify(argv) -> int:
    """`bbsparse verify` through a parser of its own (the CLI registers it likewise)."""
    parser = Parser(prog="bbsparse")
    add_verify(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    args = parser.parse_args(["verify", *argv])
    return args.run(args)


def test_slice_of_300_cases_passes():
    lines = []
    summary = soak.run_soak(SLICE, 300, jobs=jobs(), log=lines.append)
    assert not summary.failures, "\n".join(r.failure_text() for r in summary.failures)
    assert [r.index for r in summary.results] == list(range(300))
    coverage = summary.coverage()
    # The slice really covers what it claims (else passing proves little).
    assert set(coverage["engines"]) == set(ENGINES)
    assert coverage["configurations_used"] == SLICE.configs
    assert coverage["exact_cycles_checked"] >= 10
    assert 30 <= coverage["stall_free"] <= 150
    assert set(coverage["vectors"]) == {"1", "2", "3", "4"}
    assert {"banks", "columns"} <= set(coverage["orders"])
    assert lines[-1] == summary.final_line()
    assert lines[-1].startswith("verify: 300 cases, 0 failures, ")
    assert lines[-1].endswith(f"cases/min, seed {SLICE.seed}")


def test_pool_draws_every_engine_of_the_registry():
    pool = Plan(seed=11, configs=2 * len(ENGINES)).pool
    assert sorted(c.pattern for c in pool) == sorted(2 * list(ENGINES))
    # A smaller pool is the first configurations of a larger one.
    assert Plan(seed=11, configs=3).pool == pool[:3]
    assert Plan(seed=12, configs=3).pool != pool[:3]


def test_cases_follow_their_engine_and_reach_the_extremes():
    cases = [draw_case(SLICE, index) for index in range(150)]
    for case in cases:
        config = case.config
        assert config.format.weights_violation(config, case.W) is None, case.describe()
        assert case.W.shape[1] <= config.cols and case.X.shape[-1] == case.W.shape[1]
        assert 1 <= case.W.shape[0] <= soak.MAX_ROWS
    lowest = [c for c in cases if c.W.min() == -(1 << (c.config.weight_width - 1))]
    highest = [c for c in cases if c.X.max() == (1 << (c.config.act_width - 1)) - 1]
    assert lowest and highest
    assert any(c.X.ndim == 1 for c in cases) and any(c.stall_free for c in cases)
    assert any(c.W.shape[1] < c.config.cols for c in cases)  # shorter, padded matrices


def test_a_case_is_drawn_from_seed_and_index_alone():
    first = draw_case(SLICE, 37)
    for index in (5, 36, 38):
        draw_case(SLICE, index)
    again = draw_case(Plan(seed=SLICE.seed, configs=SLICE.configs), 37)
    for name in ("index", "config_index", "config", "matrix", "order", "stalls", "sim_seed"):
        assert getattr(first, name) == getattr(again, name), name
    assert np.array_equal(first.W, again.W) and np.array_equal(first.X, again.X)
    assert draw_case(Plan(seed=SLICE.seed + 1, configs=SLICE.configs), 37).sim_seed \
        != first.sim_seed


def _comparable(result):
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "sim_seconds"}


def test_a_case_replays_identically():
    """Inside a soak of 40 cases and alone, case 37 gives the same run."""
    summary = soak.run_soak(SLICE, 40, jobs=1, log=lambda line: None)
    alone = soak.replay(SLICE, 37, log=lambda line: None)
    assert _comparable(alone) == _comparable(summary.results[37])
    assert alone.ok and alone.cycles > 0
    assert alone.replay == f"{REPLAY} 37 --configs 6"


def test_replay_through_the_command_writes_waves_and_json(tmp_path, capsys):
    waves, out = tmp_path / "case.vcd", tmp_path / "case.json"
    assert verify(["--seed", str(SLICE.seed), "--configs", "6", "--case", "9",
                   "--waves", str(waves), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "case 9: configuration 4 (lanes=4 pes=4" in text and "case 9: ok" in text
    assert waves.read_text().startswith("$")  # a VCD header
    report = json.loads(out.read_text())
    assert report["index"] == 9 and report["problems"] == [] and report["seed"] == SLICE.seed


def test_a_wrong_golden_model_fails_with_the_replay_command(monkeypatch):
    right = soak.expected_y
    monkeypatch.setattr(soak, "expected_y", lambda case: right(case) + 1)
    lines = []
    summary = soak.run_soak(SLICE, 4, jobs=1, log=lines.append)
    assert [r.index for r in summary.failures] == [0, 1, 2, 3]
    text = "\n".join(lines)
    for index in range(4):
        assert f"replay: {REPLAY} {index} --configs 6" in text
    assert "results differ; first: vector 0, row 0: RTL " in text
    assert lines[-1].startswith("verify: 4 cases, 4 failures, ")


def test_the_command_exits_1_on_a_failure_and_writes_the_summary(monkeypatch, tmp_path,
                                                                  capsys):
    right = soak.expected_y
    monkeypatch.setattr(soak, "expected_y", lambda case: right(case) - 1)
    out = tmp_path / "soak.json"
    status = verify(["--seed", str(SLICE.seed), "--configs", "6", "--cases", "3", "--jobs",
                     "1", "--out", str(out)])
    assert status == 1
    assert f"replay: {REPLAY} 2 --configs 6" in capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["failures"] == 3 and summary["cases"] == 3 and summary["seed"] == SLICE.seed
    assert summary["failed_cases"][0]["replay"] == f"{REPLAY} 0 --configs 6"
    assert verify(["--seed", str(SLICE.seed), "--configs", "6", "--case", "1"]) == 1


def test_the_cycle_claims_are_checked():
    """A stall-free case in the claimed regime fails on one cycle too many, and any case on
    one cycle fewer than the model allows."""
    index = next(i for i in range(200) if (c := draw_case(SLICE, i)).stall_free
                 and c.config.format.fixed_row_length and c.config_index == 0
                 and exact_cycles_claimed(c, {}))
    case = draw_case(SLICE, index)
    with soak.known_verilog({}):
        result = run_spmv(case.config, case.W, case.X, seed=case.sim_seed, stalls=case.stalls,
                          log=lambda line: None)
    assert check_case(case, result.y, result.report) == ([], [])
    late = dict(result.report, cycles=result.report["cycles"] + 1)
    assert any("not the claimed" in p for p in check_case(case, result.y, late)[0])
    early = dict(result.report, cycles=result.report["ideal_cycles"]
                 + result.report["pipeline_latency"] - 1)
    assert any("never less" in p for p in check_case(case, result.y, early)[0])


def test_a_simulation_that_fails_is_a_failed_case(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulation stopped after 9 cycles without all y beats")

    monkeypatch.setattr(soak.harness, "run_spmv", broken)
    result = run_case(draw_case(SLICE, 3))
    assert not result.ok and "the harness failed: simulation stopped" in result.problems[0]
    assert result.failure_text().endswith(f"replay: {REPLAY} 3 --configs 6")


@pytest.mark.parametrize("argv, message", [
    (["--engines", "bbs,csr"], "--engines: unknown engine 'csr'; known: bbs, unstructured"),
    (["--waves", "x.vcd"], "--waves needs --case K"),
    (["--out", "/nonexistent/folder/s.json"], "directory '/nonexistent/folder' does not exist"),
])
def test_reject_bad_options(argv, message):
    with pytest.raises(CliError, match=message):
        verify(argv)
