# A 1-D convolutional network on sequences (128 steps, 4 channels, e.g. one-hot
# DNA), in the standard parameterization of Sohl-Dickstein et al. 2020 (widths
# enter the NTK). Strided convolutions then average pooling and a readout.
input 128x4
parameterization standard
let s = sqrt(2)
conv 5 same stride=2 width=64 w_std=s b_std=0.1
relu
conv 5 same stride=2 width=64 w_std=s b_std=0.1
relu
avgpool 4
flatten
dense width=1 w_std=1
