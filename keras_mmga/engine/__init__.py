"""Engine: training and evaluation runs, the demo."""

from keras_mmga.engine.evaluator import evaluate_model, evaluate_split, format_results
from keras_mmga.engine.trainer import TrainConfig, TrainingDiverged, build_model, train

__all__ = ["TrainConfig", "TrainingDiverged", "build_model", "evaluate_model", "evaluate_split", "format_results", "train"]
