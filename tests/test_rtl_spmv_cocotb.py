"""The generated `bbs_spmv` under Verilator, checked by the cocotb testbench tb/spmv_tb.py.

Each configuration is generated and built once (build_root()/cocotb-<hash>, shared by its
tests, by parallel workers and by later runs); each test is one cocotb run in its own folder.
A failure shows the assertion text and the seed; ``BBSPARSE_SEED=<n>`` replays a seed (or
tries another one) for every case.

Run with ``eval "$(.venv/bin/python -m bbsparse.toolchain)" && .venv/bin/pytest -n 2 -q
tests/test_rtl_spmv_cocotb.py``. With ``--dist loadgroup`` the tests of one configuration
stay on one worker (their ``xdist_group``); with the default ``--dist load`` the order below
(all stream tests first, one configuration after another) gives the workers different
configurations to build.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import pytest

from bbsparse.golden.config import Config
from bbsparse.tb.cocotb_run import run


@dataclass(frozen=True)
class Case:
    id: str
    config: dict  # overrides of Config
    rows: int
    vectors: int = 24
    expect: tuple[str, ...] = ()  # corners the stimulus must reach (see spmv_tb.coverage)
    stalls: dict = field(default_factory=dict)


CASES = [
    Case("lanes1", dict(lanes=1, pes=2, bank_size=8, nnz_per_bank=2, cols=32), rows=40),
    Case("lanes2-pes3", dict(lanes=2, pes=3, bank_size=4, nnz_per_bank=1, cols=32), rows=36),
    Case("lanes4-2of4", dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=2, cols=64), rows=40),
    Case("lanes8-dense", dict(lanes=8, pes=2, bank_size=4, nnz_per_bank=4, cols=64), rows=32),
    # One w beat per row group, 16 x beats per vector; with a slow x source, w waits for x.
    Case("lanes16-bank16-nnz1", dict(lanes=16, pes=2, bank_size=16, nnz_per_bank=1, cols=256),
         rows=40, stalls=dict(x_idle=0.5, idle_run=6)),
    # 40 / 8 = 5 banks on 4 lanes: the second round has three padding banks.
    Case("banks5-lanes4", dict(lanes=4, pes=2, bank_size=8, nnz_per_bank=2, cols=40), rows=30),
    # nnz_per_row = 24: 24 * 2**10 >> 3 = 3072 saturates 12 bits.
    Case("odd-widths", dict(lanes=4, pes=2, bank_size=8, nnz_per_bank=3, cols=64,
                            weight_width=5, act_width=7, out_width=12, out_shift=3),
         rows=30, expect=("saturate",)),
    Case("shift4-relu", dict(lanes=4, pes=2, bank_size=8, nnz_per_bank=2, cols=64,
                             out_shift=4, relu=True, out_width=10),
         rows=30, expect=("relu", "saturate")),
    # 64 products of up to 2**14 need 21 bits; 18 wrap.
    Case("acc18-wraps", dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=4, cols=64,
                             weight_width=8, act_width=8, acc_width=18),
         rows=32, expect=("wrap",)),
    Case("pes3-rows10", dict(lanes=2, pes=3, bank_size=4, nnz_per_bank=2, cols=32), rows=10),
    # The broadcast tree (3 registers): 3 groups of PEs, each taking the beat's flags
    # through registers of its own (the valid's cleared by a reset: the reset case).
    Case("pes5-broadcast3", dict(lanes=2, pes=5, bank_size=4, nnz_per_bank=1, cols=16,
                                 broadcast_registers=3), rows=40),
    # A bank size that is not a power of two: empty slots may carry indices 6 and 7; and
    # two adder-tree levels per pipeline stage.
    Case("bank6-lanes3-tree2", dict(lanes=3, pes=2, bank_size=6, nnz_per_bank=2, cols=36,
                                    tree_levels_per_stage=2), rows=28),
]


def seed_of(case: Case) -> int:
    if "BBSPARSE_SEED" in os.environ:
        return int(os.environ["BBSPARSE_SEED"])
    return zlib.crc32(case.id.encode()) % 100_000


def replay(case: Case, test: str) -> str:
    return (f"BBSPARSE_SEED={seed_of(case)} pytest "
            f"'tests/test_rtl_spmv_cocotb.py::{test}[{case.id}]'")


def params(case: Case) -> dict:
    return {"seed": seed_of(case), "rows": case.rows, "vectors": case.vectors,
            "expect": list(case.expect), **case.stalls}


def cases():
    return [pytest.param(case, id=case.id, marks=pytest.mark.xdist_group(case.id))
            for case in CASES]


def test_cases_are_valid_configs():
    for case in CASES:
        Config(**case.config)


@pytest.mark.parametrize("case", cases())
def test_stream_matches_golden(case: Case):
    config = Config(**case.config)
    run(config, params(case), ["stream_matches_golden"], name=f"stream-{case.id}",
        replay=replay(case, "test_stream_matches_golden"))


@pytest.mark.parametrize("case", cases())
def test_misplaced_tlast_raises_error(case: Case):
    config = Config(**case.config)
    testcases = ["early_x_tlast_raises_error", "late_x_tlast_raises_error"]
    # A row group of one beat has no middle for a w tlast to fall in.
    if config.cycles_per_row >= 2:
        testcases.append("w_tlast_inside_row_group_raises_error")
    run(config, params(case), testcases, name=f"tlast-{case.id}",
        replay=replay(case, "test_misplaced_tlast_raises_error"))


@pytest.mark.parametrize("case", cases())
def test_reset_mid_run_loses_everything_before_it(case: Case):
    config = Config(**case.config)
    run(config, params(case), ["reset_mid_run_loses_everything_before_it"],
        name=f"reset-{case.id}",
        replay=replay(case, "test_reset_mid_run_loses_everything_before_it"))
