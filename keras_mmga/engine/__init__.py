"""Engine: training and evaluation runs, the ablation study, the demo.

`train(TrainConfig(...))` runs a resumable, evaluated, optionally distributed
training; `evaluate_model(model_or_path, dataset_root)` gives rank-1/5/10, mAP
and mINP; `run_ablation` trains the five variants of the paper's Table 1;
`keras_mmga.engine.demo.run_demo` is `make demo`.
"""

from keras_mmga.engine.ablation import AblationDataset, format_ablation_table, run_ablation
from keras_mmga.engine.evaluator import evaluate_model, evaluate_split, format_results, load_model, write_pictures
from keras_mmga.engine.trainer import TrainConfig, TrainingDiverged, build_model, train

__all__ = [
    "AblationDataset",
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "evaluate_model",
    "evaluate_split",
    "format_ablation_table",
    "format_results",
    "load_model",
    "run_ablation",
    "train",
    "write_pictures",
]
