# CNTK-V (vanilla): Arora et al. 2019, "On Exact Computation with an Infinitely
# Wide Neural Net", Sec. 4: 3x3 same convolutions with ReLU, read out by a
# fully connected layer on the flattened features (only same-position
# covariances are needed). CIFAR-10 shape.
input 32x32x3
parameterization ntk
let depth = 5
repeat depth:
    conv 3x3 same w_std=sqrt(2)
    relu
flatten
dense w_std=1
