"""From a float model to an integer model the core runs (`bbsparse compile`): pruning to the
core's pattern, optional masked fine-tuning and int8 quantization with power-of-two scales
(:mod:`bbsparse.compiler.quantize`). Builds on :mod:`bbsparse.golden` only; the hardware is
generated from the result by the layers above."""
