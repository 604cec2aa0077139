"""Behavioural Verilog of the ECP5 primitives Yosys ships as black boxes only, for
simulation: the MULT18X18D the design instantiates, and the DP16KD block RAM Yosys' memory
mapping makes (netlist simulation, tb/netlist.py).

MULT18X18D: the model follows Lattice's description
of the block (FPGA-TN-02205, "ECP5 and ECP5-5G sysDSP Usage Guide"): 18-bit A and B, each
registered on CLK0 when ``REG_INPUTx_CLK = "CLK0"`` (clock enable CE0, synchronous reset
RST0), an optional pipeline register and an optional output register on the 36-bit
product, signed or unsigned per SIGNEDA/SIGNEDB. Only the features the design uses are
modelled (no cascade ports, C input unused); a parameter value the model does not know
stops the simulation instead of being guessed.

DP16KD: what Yosys' ``brams_map_16kd.v`` writes (widths 1, 2, 4, 9, 18 and the 36-bit
PDPW16KD mode, byte enables, the three write modes, either clock polarity, INITVAL
contents, ``REGMODE="NOREG"``) and the output register the design instantiates
(``REGMODE="OUTREG"``, clock enable OCE: the word read at one edge appears at DO after the
next, FPGA-TN-02204 "ECP5 and ECP5-5G Memory Usage Guide"); the output reset and two ports
of different widths in use together stop the simulation. Where the hardware is undefined (a
port reads what the other writes at the same edge), the model returns those bits inverted.
:data:`DP16KD_MODES_RTL` holds memories that make Yosys use every one of these modes; the
tests run their RTL and netlist side by side.
"""

__all__ = ["MULT18X18D_MODEL", "DP16KD_MODEL", "DP16KD_MODES_RTL", "DP16KD_MODES_TOP",
           "DP16KD_MODES_RANDOM_BITS", "DP16KD_MODES_OUT_BITS", "DP16KD_MODES_FILES"]

_A = ", ".join(f"A{i}" for i in range(18))
_B = ", ".join(f"B{i}" for i in range(18))
_C = ", ".join(f"C{i}" for i in range(18))
_P = ", ".join(f"P{i}" for i in range(36))

MULT18X18D_MODEL = f"""// Behavioural model of the ECP5 MULT18X18D, for simulation only
// (bbsparse/tb/ecp5_models.py).
// It is appended to the file of the design that instantiates it, so it cannot be named
// after that file.
/* verilator lint_off DECLFILENAME */
module MULT18X18D #(
  parameter REG_INPUTA_CLK = "NONE",
  parameter REG_INPUTB_CLK = "NONE",
  parameter REG_PIPELINE_CLK = "NONE",
  parameter REG_OUTPUT_CLK = "NONE",
  parameter CLK0_DIV = "ENABLED",
  parameter GSR = "DISABLED",
  parameter RESETMODE = "SYNC"
) (
  input wire {_A},
  input wire {_B},
  input wire {_C},
  input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
  input wire CLK0, CE0, RST0,
  output wire {_P}
);
  wire [17:0] a = {{{", ".join(f"A{i}" for i in reversed(range(18)))}}};
  wire [17:0] b = {{{", ".join(f"B{i}" for i in reversed(range(18)))}}};
  reg [17:0] a_reg, b_reg;
  reg [35:0] pipe_reg, out_reg;
  initial begin
    if (REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") $fatal(1, "model: REG_INPUTA_CLK");
    if (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0") $fatal(1, "model: REG_INPUTB_CLK");
    if (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0") $fatal(1, "model: REG_PIPELINE_CLK");
    if (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0") $fatal(1, "model: REG_OUTPUT_CLK");
    if (RESETMODE != "SYNC") $fatal(1, "model: only RESETMODE SYNC");
    // No timing or reset-network behaviour to model, but no silent acceptance of a value
    // the design does not use either.
    if (CLK0_DIV != "ENABLED") $fatal(1, "model: only CLK0_DIV ENABLED");
    if (GSR != "DISABLED") $fatal(1, "model: only GSR DISABLED");
  end
  // The C input feeds only the cascade/ALU paths, which the design does not use.
  wire unused_c = &{{1'b0, {_C}}};
  wire [17:0] a_used = (REG_INPUTA_CLK == "CLK0") ? a_reg : a;
  wire [17:0] b_used = (REG_INPUTB_CLK == "CLK0") ? b_reg : b;
  wire signed [18:0] a_ext = {{SIGNEDA & a_used[17], a_used}};
  wire signed [18:0] b_ext = {{SIGNEDB & b_used[17], b_used}};
  // 19 x 19 bits hold any 18 x 18 product, signed or not; the block outputs its low 36.
  wire signed [37:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  wire unused_top = &{{1'b0, full[37:36]}};
  wire [35:0] piped = (REG_PIPELINE_CLK == "CLK0") ? pipe_reg : product;
  wire [35:0] p = (REG_OUTPUT_CLK == "CLK0") ? out_reg : piped;
  always @(posedge CLK0) begin
    if (SOURCEA || SOURCEB) $fatal(1, "model: the shift-cascade inputs are not modelled");
    if (RST0) begin
      a_reg <= 18'd0; b_reg <= 18'd0; pipe_reg <= 36'd0; out_reg <= 36'd0;
    end else if (CE0) begin
      a_reg <= a; b_reg <= b; pipe_reg <= product; out_reg <= piped;
    end
  end
  assign {{{", ".join(f"P{i}" for i in reversed(range(36)))}}} = p;
endmodule
/* verilator lint_on DECLFILENAME */
"""


# -- DP16KD ------------------------------------------------------------------------------------

def _pins(prefix: str, count: int) -> str:
    return ", ".join(f"{prefix}{i}" for i in reversed(range(count)))


_INITVALS = [f"INITVAL_{i:02X}" for i in range(64)]

# One port's inputs, wires and clock edge (every declaration before its first use); @P is the
# port, @O the other one, @p / @o their clocks.
_DP16KD_INPUTS = """
  wire [13:0] ad_@P = {@AD};
  wire [17:0] di_@P = {@DI};"""

_DP16KD_PORT_WIRES = """
  // Port @P.
  wire sel_@P = CE@P && ({CS@P2, CS@P1, CS@P0} == CS_@P[2:0]);
  wire wr_@P = sel_@P && WE@P;
  localparam integer W_@P = DATA_WIDTH_@P;
  localparam integer SHIFT_@P = W_@P == 1 ? 0 : W_@P == 2 ? 1 : W_@P == 4 ? 2 : W_@P == 9 ? 3
                                : W_@P == 18 ? 4 : 5;
  localparam integer UNITS_@P = W_@P >= 9 ? W_@P / 9 : 1;
  localparam [3:0] UNIT_MASK_@P = 4'((5'd1 << UNITS_@P) - 5'd1);
  localparam [35:0] NARROW_MASK_@P = (36'd1 << W_@P) - 36'd1;
  wire [13:0] index_@P = ad_@P >> SHIFT_@P;
  // The first unit of the word; the units it writes (byte enables in the 18- and 36-bit
  // modes); where a 1/2/4-bit word sits in its unit.
  wire [10:0] unit_@P = 11'((W_@P >= 9) ? {18'd0, index_@P} * UNITS_@P
                                          : ({18'd0, index_@P} * W_@P) >> 3);
  wire [3:0] units_@P = (W_@P == 18 || W_@P == 36) ? ad_@P[3:0] & UNIT_MASK_@P : UNIT_MASK_@P;
  wire [2:0] offset_@P = 3'({18'd0, index_@P} * W_@P);
  wire [35:0] bits_@P = (W_@P >= 9) ? {{9{units_@P[3]}}, {9{units_@P[2]}}, {9{units_@P[1]}},
                                      {9{units_@P[0]}}} : NARROW_MASK_@P;
  wire [35:0] old_@P = (W_@P >= 9)
      ? {UNITS_@P > 3 ? mem[unit_@P + 11'd3] : 9'd0, UNITS_@P > 2 ? mem[unit_@P + 11'd2] : 9'd0,
         UNITS_@P > 1 ? mem[unit_@P + 11'd1] : 9'd0, mem[unit_@P]}
      : {32'd0, 4'(mem[unit_@P][7:0] >> offset_@P)} & NARROW_MASK_@P;
  // The word as a write of this port leaves it (what WRITETHROUGH reads).
  wire [35:0] new_@P = (old_@P & ~bits_@P) | (wdata_@P & bits_@P);
"""

_DP16KD_PORT_LOGIC = """
  // Port @P's clock edge. The bits the other port writes at this edge (its clock rose too)
  // read as garbage, as in the hardware (undefined there; Yosys' mapping bypasses them when
  // the design reads them): inverted, so that a design relying on them fails.
  wire [35:0] garbage_@P = (wr_@O && clk_@o && index_@O == index_@P) ? bits_@O : 36'd0;
  reg [35:0] latch_@P;

  always @(posedge clk_@p) begin
    // The output reset is not modelled; the core's memories have no read reset.
    if (RST@P) $fatal(1, "DP16KD model: the output reset (RST@P) is not modelled");
    if (WE@P && !WRITES_@P) $fatal(1, "DP16KD model: port @P writes in a read-only mode");
    if (wr_@P && wr_@O && clk_@o && index_@O == index_@P && (units_@P & units_@O) != 4'd0)
      $fatal(1, "DP16KD model: both ports write one word at one edge (undefined)");
    // Ports of different widths (Yosys gives an unused port the default width 18) are not
    // modelled side by side.
    if (sel_@P && sel_@O && clk_@o && W_@O != W_@P)
      $fatal(1, "DP16KD model: both ports in use with different widths");
    if (wr_@P && W_@P >= 9) begin
""" + "".join(f"""      if ({k} < UNITS_@P && units_@P[{k}]) mem[unit_@P + 11'd{k}] <= wdata_@P[{9 * k + 8}:{9 * k}];
""" for k in range(4)) + """    end else if (wr_@P) begin
      mem[unit_@P] <= (mem[unit_@P] & ~(9'(NARROW_MASK_@P) << offset_@P))
                      | (9'(wdata_@P & NARROW_MASK_@P) << offset_@P);
    end
    if (sel_@P && READS_@P) begin
      if (!wr_@P || WRITEMODE_@P == "READBEFOREWRITE") latch_@P <= old_@P ^ garbage_@P;
      else if (WRITEMODE_@P == "WRITETHROUGH") latch_@P <= new_@P ^ garbage_@P;
      // WRITEMODE "NORMAL": the output keeps its value during a write.
    end
  end
"""


def _port(template: str, port: str) -> str:
    other = "B" if port == "A" else "A"
    return (template.replace("@AD", _pins(f"AD{port}", 14)).replace("@DI", _pins(f"DI{port}", 18))
            .replace("@P", port).replace("@O", other)
            .replace("@p", port.lower()).replace("@o", other.lower()))


DP16KD_MODEL = f"""// Behavioural model of the ECP5 DP16KD (18-kbit block RAM), for simulation only
// (bbsparse/tb/ecp5_models.py). Yosys ships the DP16KD as a black box only. Modelled: what
// Yosys' memory mapping (brams_map_16kd.v) writes; two ports of different widths are not
// modelled in use at one edge.
/* verilator lint_off DECLFILENAME */
module DP16KD #(
  parameter integer DATA_WIDTH_A = 18,
  parameter integer DATA_WIDTH_B = 18,
  parameter string REGMODE_A = "NOREG",
  parameter string REGMODE_B = "NOREG",
  parameter string RESETMODE = "SYNC",
  parameter string ASYNC_RESET_RELEASE = "SYNC",
  parameter [39:0] CSDECODE_A = "0b000",
  parameter [39:0] CSDECODE_B = "0b000",
  parameter string WRITEMODE_A = "NORMAL",
  parameter string WRITEMODE_B = "NORMAL",
  parameter string CLKAMUX = "CLKA",
  parameter string CLKBMUX = "CLKB",
  parameter string GSR = "ENABLED",
{"".join(f"  parameter [319:0] {name} = 320'h0,{chr(10)}" for name in _INITVALS)[:-2]}
) (
  input wire {_pins("DIA", 18)},
  input wire {_pins("ADA", 14)},
  input wire CEA, OCEA, CLKA, WEA, RSTA,
  input wire CSA2, CSA1, CSA0,
  output wire {_pins("DOA", 18)},
  input wire {_pins("DIB", 18)},
  input wire {_pins("ADB", 14)},
  input wire CEB, OCEB, CLKB, WEB, RSTB,
  input wire CSB2, CSB1, CSB0,
  output wire {_pins("DOB", 18)}
);
  // The array: 2048 units of 9 bits. A 9-, 18- or 36-bit word is 1, 2 or 4 consecutive units,
  // the lowest unit in the low bits (the 9-bit byte of Yosys' byte enables). The 1-, 2- and
  // 4-bit modes see the data bits only: their bit j is bit j % 8 of unit j / 8, bit 8 of a
  // unit being the parity bit of the wider modes. The word address is AD[13:s], s = 0, 1, 2,
  // 3, 4, 5 for widths 1, 2, 4, 9, 18, 36; in the 18- and 36-bit modes AD[1:0] / AD[3:0] are
  // the byte enables of a write. The 36-bit mode (PDPW16KD) writes through port A (data
  // {{DIB, DIA}}) and reads through port B (data {{DOB, DOA}}).
  // Each port writes `mem` from the block of its own clock, as the block RAM's two ports do.
  /* verilator lint_off MULTIDRIVEN */
  reg [8:0] mem [0:2047];
  /* verilator lint_on MULTIDRIVEN */
  localparam [64*320-1:0] INITVAL = {{{", ".join(reversed(_INITVALS))}}};

  // In the 36-bit mode (both ports 36) port A only writes and port B only reads.
  localparam READS_A = DATA_WIDTH_A != 36;
  localparam READS_B = 1'b1;
  localparam WRITES_A = 1'b1;
  localparam WRITES_B = DATA_WIDTH_B != 36;

  // "0bXYZ": the chip-select value a port answers to, and (bit 3) whether the text is one.
  function automatic [3:0] cs_decode(input [39:0] text);
    integer k;
    begin
      cs_decode[3] = text[39:24] == "0b";
      for (k = 0; k < 3; k = k + 1) begin
        cs_decode[k] = text[8*k +: 8] == "1";
        if (text[8*k +: 8] != "0" && text[8*k +: 8] != "1") cs_decode[3] = 1'b0;
      end
    end
  endfunction
  localparam [3:0] CS_A = cs_decode(CSDECODE_A);
  localparam [3:0] CS_B = cs_decode(CSDECODE_B);

  function automatic width_ok(input integer width);
    width_ok = width == 1 || width == 2 || width == 4 || width == 9 || width == 18
               || width == 36;
  endfunction

  // A port Yosys leaves unused has its clock and clock enable tied to 0.
  wire clk_a = (CLKAMUX == "INV") ? ~CLKA : CLKA;
  wire clk_b = (CLKBMUX == "INV") ? ~CLKB : CLKB;

  integer i;
  initial begin
    if (!width_ok(DATA_WIDTH_A) || !width_ok(DATA_WIDTH_B)) $fatal(1, "DP16KD model: DATA_WIDTH");
    if ((DATA_WIDTH_A == 36) != (DATA_WIDTH_B == 36))
      $fatal(1, "DP16KD model: the 36-bit mode needs both ports at 36 bits");
    if (REGMODE_A != "NOREG" && REGMODE_A != "OUTREG") $fatal(1, "DP16KD model: REGMODE_A");
    if (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG") $fatal(1, "DP16KD model: REGMODE_B");
    if (DATA_WIDTH_B == 36 && REGMODE_A != REGMODE_B)
      $fatal(1, "DP16KD model: the 36-bit mode with two REGMODEs");
    if (RESETMODE != "SYNC" && RESETMODE != "ASYNC") $fatal(1, "DP16KD model: RESETMODE");
    if (ASYNC_RESET_RELEASE != "SYNC" && ASYNC_RESET_RELEASE != "ASYNC")
      $fatal(1, "DP16KD model: ASYNC_RESET_RELEASE");
    if (!CS_A[3] || !CS_B[3]) $fatal(1, "DP16KD model: CSDECODE");
    if (WRITEMODE_A != "NORMAL" && WRITEMODE_A != "WRITETHROUGH"
        && WRITEMODE_A != "READBEFOREWRITE") $fatal(1, "DP16KD model: WRITEMODE_A");
    if (WRITEMODE_B != "NORMAL" && WRITEMODE_B != "WRITETHROUGH"
        && WRITEMODE_B != "READBEFOREWRITE") $fatal(1, "DP16KD model: WRITEMODE_B");
    if (CLKAMUX != "CLKA" && CLKAMUX != "INV") $fatal(1, "DP16KD model: CLKAMUX");
    if (CLKBMUX != "CLKB" && CLKBMUX != "INV") $fatal(1, "DP16KD model: CLKBMUX");
    // GSR only decides whether the global set/reset clears the output registers; no
    // simulation here pulses it.
    if (GSR != "ENABLED" && GSR != "DISABLED" && GSR != "AUTO") $fatal(1, "DP16KD model: GSR");
    // INITVAL_xx holds 16 words of 18 bits, each in 20 bits.
    for (i = 0; i < 1024; i = i + 1) begin
      mem[2*i] = INITVAL[(i / 16) * 320 + (i % 16) * 20 +: 9];
      mem[2*i + 1] = INITVAL[(i / 16) * 320 + (i % 16) * 20 + 9 +: 9];
    end
    latch_A = 36'd0;
    latch_B = 36'd0;
    outreg_A = 36'd0;
    outreg_B = 36'd0;
  end

{_port(_DP16KD_INPUTS, "A")}{_port(_DP16KD_INPUTS, "B")}
  wire [35:0] wdata_A = (DATA_WIDTH_A == 36) ? {{di_B, di_A}} : {{18'd0, di_A}};
  wire [35:0] wdata_B = {{18'd0, di_B}};
{_port(_DP16KD_PORT_WIRES, "A")}{_port(_DP16KD_PORT_WIRES, "B")}
{_port(_DP16KD_PORT_LOGIC, "A")}{_port(_DP16KD_PORT_LOGIC, "B")}
  // REGMODE "OUTREG": the output register, on the port's clock, enabled by OCE, takes what
  // the read latch held before the edge, so a word reaches DO one edge later than in NOREG.
  reg [35:0] outreg_A, outreg_B;
  always @(posedge clk_a) if (OCEA) outreg_A <= latch_A;
  always @(posedge clk_b) if (OCEB) outreg_B <= latch_B;
  wire [35:0] read_a = (REGMODE_A == "OUTREG") ? outreg_A : latch_A;
  wire [35:0] read_b = (REGMODE_B == "OUTREG") ? outreg_B : latch_B;
  wire [35:0] out_a = (DATA_WIDTH_B == 36) ? {{18'd0, read_b[17:0]}} : read_a;
  wire [35:0] out_b = (DATA_WIDTH_B == 36) ? {{18'd0, read_b[35:18]}} : read_b;
  assign {{{_pins("DOA", 18)}}} = out_a[17:0];
  assign {{{_pins("DOB", 18)}}} = out_b[17:0];
  wire unused = &{{1'b0, out_a[35:18], out_b[35:18]}};
endmodule
/* verilator lint_on DECLFILENAME */
"""


# -- A check of the DP16KD model against Yosys' mapping ---------------------------------------

#: Memories that Yosys' ECP5 mapping (``synth_ecp5 -nolutram``) puts into DP16KD blocks in
#: every mode it uses: widths 1, 2, 4, 9, 18 (byte enables) and 36 (PDPW16KD, byte enables);
#: one port writing and the other reading, with reads meeting writes of the same word; one
#: port reading and writing (WRITEMODE READBEFOREWRITE, WRITETHROUGH, NORMAL); a read enable
#: (CE); a falling-edge clock (CLKxMUX INV). Ports: ``clk``, ``r`` (random bits, new every
#: cycle: :data:`DP16KD_MODES_RANDOM_BITS`), ``q`` (every read port,
#: :data:`DP16KD_MODES_OUT_BITS`). The RTL and its netlist run side by side
#: (``tb.netlist.run_lockstep``).
DP16KD_MODES_TOP = "dp16kd_modes"
DP16KD_MODES_RANDOM_BITS = 69
DP16KD_MODES_OUT_BITS = 115


#: The initial contents of each memory of :data:`DP16KD_MODES_RTL`, by file name: the words
#: of a multiplicative hash of the address, as hex lines for ``$readmemh``.
DP16KD_MODES_FILES = {}


def _dp16kd_memory(name: str, width: int, depth: int, body: str) -> str:
    abits = (depth - 1).bit_length()
    DP16KD_MODES_FILES[f"{name}.hex"] = "".join(
        f"{((i * 0x9E3779B97F4A7C15) & (2**64 - 1)) >> (64 - width):x}\n" for i in range(depth))
    return f"""
  reg [{width - 1}:0] {name} [0:{depth - 1}];
  // Contents at configuration (the INITVAL parameters): a different word at each address.
  initial $readmemh("{name}.hex", {name});
  wire [{abits - 1}:0] {name}_wa = wa[{abits - 1}:0];
  wire [{abits - 1}:0] {name}_ra = ra[{abits - 1}:0];
  reg [{width - 1}:0] q_{name};
  initial q_{name} = {width}'d0;  // as the block's output latch starts
{body}"""


_SIMPLE = """  always @(posedge clk) begin
    if (we[0]) {m}[{m}_wa] <= d[{w}:0];
    q_{m} <= {m}[{m}_ra];
  end
"""

DP16KD_MODES_RTL = f"""// Memories for each DP16KD mode Yosys uses (bbsparse/tb/ecp5_models.py).
module {DP16KD_MODES_TOP} (
  input wire clk,
  input wire [{DP16KD_MODES_RANDOM_BITS - 1}:0] r,
  output wire [{DP16KD_MODES_OUT_BITS - 1}:0] q
);
  // Half the addresses fall in a 16-word window, so that reads often meet writes.
  wire [13:0] wa = r[14] ? {{10'd0, r[3:0]}} : r[13:0];
  wire [13:0] ra = r[29] ? {{10'd0, r[18:15]}} : r[28:15];
  wire [35:0] d = r[65:30];
  wire [3:0] we = {{r[68:67], r[66] & r[68], r[66]}};
  wire re = r[67] ^ r[0];
{_dp16kd_memory("x1", 1, 16384, _SIMPLE.format(m="x1", w=0))}
{_dp16kd_memory("x2", 2, 8192, _SIMPLE.format(m="x2", w=1))}
{_dp16kd_memory("x4", 4, 4096, _SIMPLE.format(m="x4", w=3))}
{_dp16kd_memory("x9", 9, 2048, _SIMPLE.format(m="x9", w=8))}
{_dp16kd_memory("x18", 18, 1024, '''  always @(posedge clk) begin
    if (we[0]) x18[x18_wa][8:0] <= d[8:0];
    if (we[1]) x18[x18_wa][17:9] <= d[17:9];
    q_x18 <= x18[x18_ra];
  end
''')}
{_dp16kd_memory("x36", 36, 512, '''  always @(posedge clk) begin
    if (we[0]) x36[x36_wa][8:0] <= d[8:0];
    if (we[1]) x36[x36_wa][17:9] <= d[17:9];
    if (we[2]) x36[x36_wa][26:18] <= d[26:18];
    if (we[3]) x36[x36_wa][35:27] <= d[35:27];
    q_x36 <= x36[x36_ra];
  end
''')}
{_dp16kd_memory("rbw", 9, 2048, '''  always @(posedge clk) begin
    if (we[1]) rbw[rbw_wa] <= d[8:0];
    q_rbw <= rbw[rbw_wa];
  end
''')}
{_dp16kd_memory("wt", 9, 2048, '''  reg [10:0] wt_addr;
  always @(posedge clk) begin
    if (we[2]) wt[wt_wa] <= d[8:0];
    wt_addr <= wt_wa;
  end
  always @(*) q_wt = wt[wt_addr];
''')}
{_dp16kd_memory("nc", 9, 2048, '''  always @(posedge clk) begin
    if (we[3]) nc[nc_wa] <= d[8:0];
    else q_nc <= nc[nc_wa];
  end
''')}
{_dp16kd_memory("ce", 9, 2048, '''  always @(posedge clk) begin
    if (we[0]) ce[ce_wa] <= d[8:0];
    if (re) q_ce <= ce[ce_ra];
  end
''')}
{_dp16kd_memory("neg", 9, 2048, '''  // On the falling edge, between the rising edges that change the inputs and sample q: a
  // read port acting on the rising edge would be a cycle late.
  always @(negedge clk) begin
    if (we[1]) neg[neg_wa] <= d[8:0];
    q_neg <= neg[neg_ra];
  end
''')}
  assign q = {{q_x1, q_x2, q_x4, q_x9, q_x18, q_x36, q_rbw, q_wt, q_nc, q_ce, q_neg}};
  wire unused = &{{1'b0, rbw_ra, wt_ra, nc_ra}};
endmodule
"""
