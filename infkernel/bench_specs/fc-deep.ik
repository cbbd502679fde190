# Benchmark workload fc-deep (../shared/peer/workloads.json): a 10-layer
# fully connected ReLU network on 784 inputs, n = 2048.
input 784
parameterization ntk
let depth = 10
repeat depth:
    dense w_std=sqrt(2) b_std=0.1
    relu
dense w_std=1 b_std=0
