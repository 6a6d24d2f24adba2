"""Engine: training and evaluation runs, rank validation, the ablation study, the demo.

`train(TrainConfig(...))` runs a resumable, evaluated, optionally distributed
training; `dataset_metrics(model_or_path, dataset_root)` (from
`keras_mmga.evaluation`) gives rank-1/5/10, mAP and mINP; `RankValidation`
puts `val_rank1` / `val_mAP` into the logs of your own `model.fit` (for
`EarlyStopping` / `ModelCheckpoint`); `run_ablation`
trains the five variants of the paper's Table 1; `run_demo` is `make demo`.

The names load on first use (PEP 562): `keras_mmga.engine.config` (the
`TrainConfig` / `DemoConfig` dataclasses) imports no TensorFlow, so the
`keras-mmga` command shows their defaults in `--help` at once.
"""

from keras_mmga.lazy import lazy_exports

# name -> module that defines it
_LAZY = {
    "AblationDataset": "keras_mmga.engine.ablation",
    "format_ablation_table": "keras_mmga.engine.ablation",
    "run_ablation": "keras_mmga.engine.ablation",
    "RankValidation": "keras_mmga.engine.callbacks",
    "DemoConfig": "keras_mmga.engine.config",
    "TrainConfig": "keras_mmga.engine.config",
    "run_demo": "keras_mmga.engine.demo",
    "TrainingDiverged": "keras_mmga.engine.trainer",
    "build_model": "keras_mmga.engine.trainer",
    "train": "keras_mmga.engine.trainer",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("keras_mmga.engine", _LAZY, globals())
