# A fully connected ReLU net for scikit-learn's 8x8 digits, flattened to 64
# inputs: the lazy-versus-feature-learning example (Lee et al. 2019, Fig. 1 setting in small).
input 64
parameterization ntk
let depth = 1
let w_std = sqrt(2)
let b_std = 0.1
repeat depth:
    dense w_std=w_std b_std=b_std
    relu
dense w_std=1
