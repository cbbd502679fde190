# Benchmark workload cnn-gap (../shared/peer/workloads.json): the CNTK of
# Arora et al. 2019 with 5 conv/relu layers and global average pooling on
# 16x16x3 images, n = 64. Needs covariances of pairs of positions.
input 16x16x3
parameterization ntk
let depth = 5
repeat depth:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
gap
dense w_std=1 b_std=0
