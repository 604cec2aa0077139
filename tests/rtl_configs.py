"""The configurations the RTL tests run, each named for what it covers."""

RTL_CONFIGS = {
    "lanes1": dict(lanes=1, pes=1, bank_size=4, nnz_per_bank=2, cols=32),
    # Three broadcast registers: one for all PEs, one for each of two groups of PEs (PEs 0
    # and 1, PE 2), one for each PE; a result register after every PE (the y FIFO's
    # three slices take the valid's copies through one more register each).
    "lanes2-pes3": dict(lanes=2, pes=3, bank_size=8, nnz_per_bank=2, cols=64,
                        broadcast_registers=3, result_registers=1),
    "lanes4-2of4": dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=2, cols=64),
    "lanes8-dense": dict(lanes=8, pes=1, bank_size=4, nnz_per_bank=4, cols=64),
    "lanes16-bank16-nnz1": dict(lanes=16, pes=2, bank_size=16, nnz_per_bank=1, cols=512),
    "banks-not-multiple-of-lanes": dict(lanes=4, pes=2, bank_size=8, nnz_per_bank=3, cols=40),
    "odd-widths": dict(lanes=4, pes=2, bank_size=4, nnz_per_bank=1, cols=48, weight_width=5,
                       act_width=7, out_width=12, out_shift=3),
    "shift-relu": dict(lanes=8, pes=2, bank_size=8, nnz_per_bank=2, cols=128, out_shift=4,
                       out_width=8, relu=True),
    # The accumulator wraps; one fabric register in front of every operand and one after
    # every product (two more PE cycles).
    "acc-wraps": dict(lanes=4, pes=1, bank_size=4, nnz_per_bank=4, cols=64, acc_width=18,
                      product_registers=1, operand_registers=1),
    # Two tree levels a stage; the x writes and read base reach each PE through a
    # broadcast register of its own (one more memory cycle).
    "pes3-tree2": dict(lanes=8, pes=3, bank_size=8, nnz_per_bank=1, cols=256,
                       tree_levels_per_stage=2, broadcast_registers=1),
    # LUT multipliers (odd widths: Booth digits of a 7-bit weight) in the last 6 lanes, PE 1
    # mixed, every PE at the LUT latency; the last 5 vector banks in LUT RAM, the others
    # placed in block RAM; two product registers after every DSP multiplier (the LUT
    # multipliers' last stages count as theirs), one more in the mixed PE 1 (PEs 0 and 2
    # wait for it), and two operand registers in front of every multiplier; two broadcast
    # registers; two result registers.
    "lut-lanes": dict(lanes=4, pes=3, bank_size=4, nnz_per_bank=2, cols=64, weight_width=7,
                      act_width=6, lut_multipliers=6, lutram_banks=5, product_registers=2,
                      mixed_product_registers=1, operand_registers=2, broadcast_registers=2,
                      result_registers=2),
    # More lanes than one broadcast copy drives (BBSSpMV.BROADCAST_LANES = 16): each PE's
    # banks in two groups (16 + 4 lanes), each with copies of its own; LUT RAM from PE 0's
    # lane 15 on (across the groups' boundary), LUT multipliers in PE 1.
    "lanes20-groups": dict(lanes=20, pes=2, bank_size=4, nnz_per_bank=2, cols=80,
                           weight_width=6, act_width=5, lut_multipliers=20, lutram_banks=25,
                           broadcast_registers=2),
    # More PEs than y FIFO slices (BBSSpMV.FIFO_SLICES_MAX = 16): 9 slices of about two
    # PEs' bits each, each with a control and a valid copy of its own.
    "pes17-grouped-slices": dict(lanes=1, pes=17, bank_size=4, nnz_per_bank=2, cols=16),
    "default": dict(),
}
