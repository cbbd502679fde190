# A small residual convolutional network (He et al. 2016 blocks without
# normalisation, as in the neural-tangents examples): each block adds a
# relu-conv-relu-conv branch to its input; global average pooling readout.
input 32x32x3
parameterization ntk
let blocks = 2
let s = sqrt(2)
block res(w):
    residual:
        relu
        conv 3x3 same w_std=w
        relu
        conv 3x3 same w_std=w
conv 3x3 same w_std=s
repeat blocks:
    res(s)
relu
gap
dense w_std=1
