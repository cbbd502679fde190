# A small CNTK for scikit-learn's 8x8 digits (the README's bundled example):
# Arora et al. 2019 CNTK-GAP, two 3x3 layers.
input 8x8x1
parameterization ntk
let depth = 2
repeat depth:
    conv 3x3 same w_std=sqrt(2)
    relu
gap
dense w_std=1
