# Benchmark workload myrtle5 (../shared/peer/workloads.json): Myrtle-5
# (Shankar et al. 2020) on 32x32x3 images, n = 16; the last 8x8 pooling
# reaches 1x1.
input 32x32x3
parameterization ntk
let s = sqrt(2)
conv 3x3 same w_std=s b_std=0
relu
conv 3x3 same w_std=s b_std=0
relu
avgpool 2x2
conv 3x3 same w_std=s b_std=0
relu
avgpool 2x2
conv 3x3 same w_std=s b_std=0
relu
avgpool 8x8
flatten
dense w_std=1 b_std=0
