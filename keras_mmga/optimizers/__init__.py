"""Optimizer, schedule and epoch counter reproducing the paper's PyTorch training recipe."""

from keras_mmga.optimizers.epoch_counter import EpochCounter
from keras_mmga.optimizers.epoch_step_decay import EpochStepDecay
from keras_mmga.optimizers.param_group_sgd import ParamGroupSGD

__all__ = ["EpochCounter", "EpochStepDecay", "ParamGroupSGD"]
