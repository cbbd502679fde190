# A small transformer-style encoder (post-layernorm, as in Vaswani et al. 2017,
# "Attention is all you need", Sec. 3.1) at infinite width: Hron et al. 2020,
# "Infinite attention: NNGP and NTK for deep attention networks", Sec. 3.1
# (softmax attention with linear scaling, whose limit has a closed form) and
# their Sec. 4 architecture of residual attention + layernorm + residual
# position-wise MLP + layernorm blocks. Sequences of 32 positions with 16
# channels; no positional embeddings (the kernel is permutation-equivariant in
# the positions); global average pooling over positions, then a readout.
input 32x16
parameterization ntk
let depth = 2
let heads = 4
conv 1 w_std=1 b_std=0                     # embedding: a dense layer at every position
repeat depth:
    residual:
        attention heads=heads mechanism=softmax scaling=linear w_key_std=1 w_query_std=1 w_value_std=1 w_out_std=1
    layernorm
    residual:                              # the position-wise MLP
        conv 1 w_std=sqrt(2) b_std=0.1
        relu
        conv 1 w_std=1 b_std=0
    layernorm
gap
dense w_std=1
