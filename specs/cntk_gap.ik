# CNTK-GAP: Arora et al. 2019, "On Exact Computation with an Infinitely Wide
# Neural Net", Sec. 4 and Table 1: the vanilla CNTK with global average pooling
# before the readout (needs covariances of pairs of positions).
input 32x32x3
parameterization ntk
let depth = 5
repeat depth:
    conv 3x3 same w_std=sqrt(2)
    relu
gap
dense w_std=1
