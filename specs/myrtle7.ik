# Myrtle-7: Shankar et al. 2020, "Neural Kernels Without Tangents", Fig. 1, with
# the layer counts {5: [2,1,1], 7: [2,2,2], 10: [3,3,3]} of its three stages and
# w_std = sqrt(2). The last pooling (8x8 here) is their three 2x2 poolings to 1x1.
input 32x32x3
parameterization ntk
let s = sqrt(2)
repeat 2:
    conv 3x3 same w_std=s
    relu
avgpool 2x2
repeat 2:
    conv 3x3 same w_std=s
    relu
avgpool 2x2
repeat 2:
    conv 3x3 same w_std=s
    relu
avgpool 8x8
flatten
dense w_std=1
