"""BatchNormalization settings shared by the backbone and the attention layers."""

# PyTorch's BatchNorm momentum 0.1 is Keras momentum 0.9. The paper's recipe is
# PyTorch's, and Keras's default 0.99 leaves the inference statistics far
# behind the weights early in training (short runs evaluate badly).
BN_MOMENTUM = 0.9
