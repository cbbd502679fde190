# Fully connected ReLU network (Jacot et al. 2018; Lee et al. 2018, "Deep neural
# networks as Gaussian processes"). He initialisation w_std = sqrt(2).
# Searchable: infkernel fit specs/fc_relu.ik --search depth=1,2,3 --search w_std=1.2,1.4,1.6 ...
input 784
parameterization ntk
let depth = 3
let w_std = sqrt(2)
let b_std = 0.1
repeat depth:
    dense w_std=w_std b_std=b_std
    relu
dense w_std=1
