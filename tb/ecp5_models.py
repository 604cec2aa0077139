"""Behavioural Verilog of the ECP5 primitives the design instantiates, for simulation.

Yosys ships the MULT18X18D as a black box only. This model follows Lattice's description
of the block (FPGA-TN-02205, "ECP5 and ECP5-5G sysDSP Usage Guide"): 18-bit A and B, each
registered on CLK0 when ``REG_INPUTx_CLK = "CLK0"`` (clock enable CE0, synchronous reset
RST0), an optional pipeline register and an optional output register on the 36-bit
product, signed or unsigned per SIGNEDA/SIGNEDB. Only the features the design uses are
modelled (no cascade ports, C input unused); a parameter value the model does not know
stops the simulation instead of being guessed.
"""

__all__ = ["MULT18X18D_MODEL"]

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
