# CNTK-GAP (Arora et al. 2019, "On Exact Computation with an Infinitely Wide
# Neural Net", Sec. 4) on Fashion-MNIST images average-pooled 4x4 to 7x7 first:
# benchmarks/pipeline.py's pooled-7x7 model, as a file for `infkernel fit`
# (exact, or approximated with --features M; docs/features.md).
input 28x28x1
parameterization ntk
let depth = 3
avgpool 4x4
repeat depth:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
gap
dense w_std=1 b_std=0
