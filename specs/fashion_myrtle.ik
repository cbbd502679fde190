# Myrtle-style CNN kernel for 28x28 grey images (Fashion-MNIST, MNIST), after
# Shankar et al. 2020, "Neural Kernels Without Tangents", Fig. 1 (conv 3x3 +
# relu stages separated by 2x2 average pooling, w_std = sqrt(2)), with the CNTK
# conventions of Arora et al. 2019 (Sec. 4). The last pooling keeps a 7x7 map
# and flatten (exact) feeds the readout, instead of pooling to 1x1: with
# random features (`infkernel fit ... --features M --feature-width W`) the
# readout then has 49 W dimensions while the hidden layers cost about W^2
# (docs/features.md, "Hidden width and readout").
input 28x28x1
parameterization ntk
let d1 = 1
let d2 = 1
repeat d1:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
avgpool 2x2
repeat d2:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
avgpool 2x2
flatten
dense w_std=1 b_std=0
