# Benchmark workload cnn-flatten (../shared/peer/workloads.json): 8 conv/relu
# layers read out by flatten on 32x32x3 images, n = 256. Same-position
# covariances only.
input 32x32x3
parameterization ntk
let depth = 8
repeat depth:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
flatten
dense w_std=1 b_std=0
