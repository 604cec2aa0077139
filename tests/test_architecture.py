"""The architecture's rules (DESIGN §15): the dependency direction, and one place per
variation point (engines, FPGA families)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bbsparse.golden.config import Config, ConfigError
from bbsparse.golden.formats import FORMATS
from bbsparse.hdl.engines import ENGINES, engine_of
from bbsparse.toolchain import import_tree, lint_imports

ROOT = Path(__file__).resolve().parent.parent

# Where an engine or a family may be named in a comparison: the registries, and each
# family's own module.
ALLOWED = {"golden/formats.py", "hdl/engines.py", "golden/unstructured.py"}
ALLOWED_PREFIXES = ("synth/families/",)
COMPARISON = re.compile(
    r"""(\.pattern|\bfamily|\.engine)\s*(==|!=|\bin\b|\bnot\s+in\b)"""
    r"""|(==|!=)\s*[\w.]*\.(pattern|family)\b""")


def _sources():
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    return [f for f in files if not f.startswith("tests/")]


def comparisons(text: str) -> list[int]:
    return [number for number, line in enumerate(text.splitlines(), 1)
            if COMPARISON.search(line.split("#")[0])]


def test_the_comparison_pattern_finds_what_it_should():
    assert comparisons('if config.pattern == "bbs":\n    pass') == [1]
    assert comparisons('x = 1\nif target.family != "ice40": pass') == [2]
    assert comparisons('if "bbs" == cfg.pattern: pass') == [1]
    assert comparisons('if c.pattern in ("bbs",): pass') == [1]
    assert comparisons("pattern = cfg.pattern  # cfg.pattern == x") == []


def test_no_engine_or_family_comparison_outside_the_registries():
    found = []
    for name in _sources():
        if name in ALLOWED or name.startswith(ALLOWED_PREFIXES):
            continue
        for number in comparisons((ROOT / name).read_text()):
            found.append(f"{name}:{number}")
    assert not found, "engine/family tested outside its registry: " + ", ".join(found)


def test_every_engine_is_complete():
    assert set(ENGINES) == set(FORMATS)
    for name, engine in ENGINES.items():
        assert engine.name == name
        config = Config(pattern=name, lanes=4, pes=2, bank_size=4, cols=32)
        assert engine_of(config) is engine
        core = engine.core(config)
        core._MustUse__silence = True  # built for its signature only
        assert engine.latency_of(config) >= 1
        assert engine.y_credits_of(config) >= 2
        assert {"s_axis_x", "s_axis_w", "m_axis_y", "error"} <= set(core.signature.members)
        roles = [need.role for need in engine.memories(config)]
        assert roles[0] == "vector banks" and roles[-1] == "y FIFO"  # cbs adds its accumulators


def test_unknown_engine_is_named():
    with pytest.raises(ConfigError, match=r"pattern must be one of 'bbs', 'unstructured', 'cbs', "
                                          r"not 'csr'"):
        Config(pattern="csr")


def test_import_layers_hold(tmp_path):
    result = lint_imports(ROOT, tmp_path / "tree", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_import_layers_catch_an_upward_import(tmp_path):
    """The contract is not vacuous: golden importing hdl breaks it."""
    tree = import_tree(ROOT, tmp_path / "tree")
    golden = tree / "bbsparse" / "golden"
    golden.unlink()
    shutil.copytree(ROOT / "golden", golden, ignore=shutil.ignore_patterns("__pycache__"))
    (golden / "upward.py").write_text("from ..hdl import engines  # noqa\n")
    result = lint_imports(ROOT, tree, lay_out=False, capture_output=True, text=True)
    assert result.returncode != 0
    assert "bbsparse.golden.upward -> bbsparse.hdl.engines" in result.stdout
