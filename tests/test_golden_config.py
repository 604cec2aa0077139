"""Configuration: defaults, derived figures, every ConfigError message, TOML and --set."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bbsparse.golden.config import PARAMETERS, Config, ConfigError, load_config, parse_overrides

KNOWN = ", ".join(PARAMETERS)


def test_defaults_are_filled_in():
    cfg = Config()
    # 1024 / 8 banks x 1 nonzero = 128 products: 8 + 8 + 7 bits.
    assert cfg.acc_width == 23
    assert cfg.out_width == 23
    assert (cfg.out_shift, cfg.relu) == (0, False)
    assert cfg.to_dict()["acc_width"] == 23
    assert set(cfg.to_dict()) == set(PARAMETERS)


def test_derived_figures():
    # 5 banks on 3 lanes: 2 rounds, the second with one padding bank.
    cfg = Config(lanes=3, pes=2, bank_size=4, nnz_per_bank=2, cols=20)
    assert cfg.banks_per_row == 5
    assert cfg.rounds == 2
    assert cfg.padded_banks_per_row == 6
    assert cfg.cycles_per_row == 4
    assert cfg.x_beats == 8
    assert cfg.index_width == 2
    assert cfg.w_entry_width == 10
    assert cfg.w_beat_width == 60
    assert cfg.x_beat_width == 24
    assert cfg.row_groups(5) == 3
    assert cfg.row_groups(4) == 2


@pytest.mark.parametrize(("bank_size", "index_width"), [(1, 1), (2, 1), (3, 2), (8, 3), (9, 4)])
def test_index_width(bank_size, index_width):
    assert (
        Config(bank_size=bank_size, nnz_per_bank=1, cols=bank_size * 4).index_width == index_width
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"relu": 1}, "relu must be a boolean (true or false), not 1"),
        ({"relu": "yes"}, "relu must be a boolean (true or false), not 'yes'"),
        ({"lanes": 2.5}, "lanes must be an integer, not 2.5"),
        ({"pes": True}, "pes must be an integer, not True"),
        ({"acc_width": "24"}, "acc_width must be an integer, not '24'"),
        ({"lanes": 0}, "lanes must be at least 1, not 0"),
        ({"pes": -1}, "pes must be at least 1, not -1"),
        ({"bank_size": 0}, "bank_size must be at least 1, not 0"),
        ({"nnz_per_bank": 0}, "nnz_per_bank must be at least 1, not 0"),
        ({"cols": 0}, "cols must be at least 1, not 0"),
        ({"tree_levels_per_stage": 0}, "tree_levels_per_stage must be at least 1, not 0"),
        ({"weight_width": 0}, "weight_width must be at least 1 bit, not 0"),
        ({"act_width": -3}, "act_width must be at least 1 bit, not -3"),
        ({"nnz_per_bank": 9}, "nnz_per_bank must not exceed bank_size (8), not 9"),
        ({"cols": 100}, "cols must be a multiple of bank_size (8), not 100"),
        (
            {"acc_width": 15},
            "acc_width must hold one product: at least weight_width + act_width = 16, not 15",
        ),
        ({"out_width": 0}, "out_width must be at least 1 bit, not 0"),
        ({"out_width": 24}, "out_width must not exceed acc_width (23), not 24"),
        ({"out_shift": -1}, "out_shift must not be negative, not -1"),
        ({"out_shift": 23}, "out_shift must be less than acc_width (23), not 23"),
    ],
)
def test_config_error_messages(params, message):
    with pytest.raises(ConfigError) as info:
        Config(**params)
    assert str(info.value) == message
    # The message names the parameter and its value, as DESIGN §2 requires.
    name, value = next(iter(params.items()))
    assert name in str(info.value) and repr(value) in str(info.value)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_row_groups_rejects_no_rows():
    with pytest.raises(ConfigError, match=r"^rows must be at least 1, not 0$"):
        Config().row_groups(0)


def test_explicit_widths_are_kept():
    cfg = Config(acc_width=30, out_width=12, out_shift=5, relu=True)
    assert (cfg.acc_width, cfg.out_width, cfg.out_shift, cfg.relu) == (30, 12, 5, True)


@settings(max_examples=60, deadline=None)
@given(
    lanes=st.integers(1, 9),
    bank_size=st.integers(1, 16),
    banks=st.integers(1, 40),
    data=st.data(),
)
def test_derived_invariants(lanes, bank_size, banks, data):
    nnz = data.draw(st.integers(1, bank_size))
    cfg = Config(lanes=lanes, bank_size=bank_size, nnz_per_bank=nnz, cols=banks * bank_size)
    assert cfg.padded_banks_per_row >= cfg.banks_per_row > cfg.padded_banks_per_row - lanes
    assert cfg.padded_banks_per_row % lanes == 0
    assert cfg.cycles_per_row * lanes >= cfg.banks_per_row * nnz
    assert 2**cfg.index_width >= bank_size
    # The default accumulator holds the largest possible row sum: no overflow.
    largest = cfg.nnz_per_row * 2 ** (cfg.weight_width - 1) * 2 ** (cfg.act_width - 1)
    assert largest <= 2 ** (cfg.acc_width - 1)


# -- --set ----------------------------------------------------------------------------------


def test_parse_overrides_reads_toml_values():
    parsed = parse_overrides(["lanes=4", "relu = true", " out_shift= 3 ", "pes=2"])
    assert parsed == {"lanes": 4, "relu": True, "out_shift": 3, "pes": 2}
    assert isinstance(parsed["lanes"], int) and parsed["relu"] is True


def test_parse_overrides_bare_word_is_a_string():
    assert parse_overrides(["relu=yes"]) == {"relu": "yes"}
    with pytest.raises(ConfigError, match=r"relu must be a boolean \(true or false\), not 'yes'"):
        load_config(None, ["relu=yes"])


@pytest.mark.parametrize("item", ["lanes", "=4", " = 4"])
def test_parse_overrides_needs_name_and_value(item):
    with pytest.raises(ConfigError) as info:
        parse_overrides([item])
    assert str(info.value) == f"--set takes name=value, not {item!r}"


def test_parse_overrides_unknown_name():
    with pytest.raises(ConfigError) as info:
        parse_overrides(["lane=4"])
    assert str(info.value) == f"unknown parameter 'lane' in --set; known: {KNOWN}"


def test_override_float_is_refused_by_config():
    with pytest.raises(ConfigError, match=r"^lanes must be an integer, not 2.5$"):
        load_config(None, ["lanes=2.5"])


# -- TOML -----------------------------------------------------------------------------------


def test_load_config_file_and_overrides(tmp_path):
    path = tmp_path / "core.toml"
    path.write_text("lanes = 4\nbank_size = 4\nnnz_per_bank = 2\ncols = 64\nrelu = true\n")
    cfg = load_config(path, ["lanes=2"])
    assert (cfg.lanes, cfg.bank_size, cfg.nnz_per_bank, cfg.cols, cfg.relu) == (2, 4, 2, 64, True)
    # 16 banks x 2 = 32 products: 8 + 8 + 5 bits.
    assert cfg.acc_width == 21


def test_load_config_without_file_gives_defaults():
    assert load_config() == Config()


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read configuration {str(path)!r}: No such file or directory"


def test_load_config_bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("lanes = = 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid TOML: ")


def test_load_config_unknown_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("lanes = 4\nbanksize = 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: unknown parameter 'banksize'; known: {KNOWN}"


def test_load_config_invalid_value_in_file(tmp_path):
    path = tmp_path / "invalid.toml"
    path.write_text("bank_size = 4\nnnz_per_bank = 5\n")
    with pytest.raises(ConfigError, match=r"^nnz_per_bank must not exceed bank_size \(4\), not 5$"):
        load_config(path)


@pytest.mark.parametrize("params", [
    {},
    {"relu": True, "out_shift": 3, "out_width": 8},
    {"pattern": "unstructured", "lanes": 4, "cols": 64},
])
def test_to_toml_reads_back_equal(tmp_path, params):
    config = Config(**params)
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config
