# Benchmark workload attention (../shared/peer/workloads.json, nt_bench.py attention):
# a transformer-style encoder on sequences of 64 positions with 16 channels,
# n = 128. A 1-wide conv embeds each position; each of two blocks is residual
# softmax self-attention with 4 heads and linear scaling (Hron et al. 2020),
# layernorm, a residual 1-wide conv/relu/conv (the position-wise MLP) and
# layernorm; global average pooling and a dense readout. No positional
# embeddings. Attention needs covariances of all pairs of positions.
input 64x16
parameterization ntk
conv 1 w_std=1 b_std=0
repeat 2:
    residual:
        attention heads=4 mechanism=softmax scaling=linear w_key_std=1 w_query_std=1 w_value_std=1 w_out_std=1
    layernorm
    residual:
        conv 1 w_std=1 b_std=0
        relu
        conv 1 w_std=1 b_std=0
    layernorm
gap
dense w_std=1 b_std=0
