# Fully connected erf network (Williams 1997, "Computing with infinite networks";
# Lee et al. 2018 use erf nets for their exact GP posteriors).
input 784
parameterization ntk
let depth = 3
let sw = 1.5
repeat depth:
    dense w_std=sw b_std=0.05
    erf
dense w_std=1
