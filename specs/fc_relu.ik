# Fully connected ReLU network (Jacot et al. 2018; Lee et al. 2018, "Deep neural
# networks as Gaussian processes"). He initialisation w_std = sqrt(2).
input 784
parameterization ntk
let depth = 3
repeat depth:
    dense w_std=sqrt(2) b_std=0.1
    relu
dense w_std=1
