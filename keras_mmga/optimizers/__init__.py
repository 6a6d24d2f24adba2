"""Optimizer and schedule reproducing the paper's PyTorch training recipe."""

from keras_mmga.optimizers.epoch_step_decay import EpochStepDecay
from keras_mmga.optimizers.param_group_sgd import ParamGroupSGD

__all__ = ["EpochStepDecay", "ParamGroupSGD"]
