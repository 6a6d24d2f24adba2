"""`make demo`: synthetic dataset -> train MMGA -> evaluate (vs untrained) -> pictures -> ONNX.

Runs on a CPU in about 5 minutes with no downloads; writes demo_output/ and
exported/demo_<variant>.onnx.
"""

import argparse
import dataclasses

from keras_mmga.engine.demo import DemoConfig, run_demo

D = {f.name: f.default for f in dataclasses.fields(DemoConfig)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=D["out_dir"], help="data, run folder, pictures, results.json")
    p.add_argument("--export-dir", default=D["export_dir"])
    p.add_argument("--variant", default=D["variant"], choices=["baseline", "baseline_att", "wmga", "dmga", "mmga"])
    p.add_argument("--epochs", type=int, default=D["epochs"])
    p.add_argument("--steps-per-epoch", type=int, default=D["steps_per_epoch"])
    p.add_argument("--lr", type=float, default=D["learning_rate"])
    p.add_argument("--lr-decay-epochs", type=int, default=D["lr_decay_epochs"])
    p.add_argument("--height", type=int, default=D["image_size"][0])
    p.add_argument("--width", type=int, default=D["image_size"][1])
    p.add_argument("--ids", type=int, default=D["num_train_ids"], help="training (and test) identities")
    p.add_argument("--seed", type=int, default=D["seed"])
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    a = p.parse_args(argv)
    config = DemoConfig(
        out_dir=a.out, export_dir=a.export_dir, variant=a.variant, epochs=a.epochs, steps_per_epoch=a.steps_per_epoch,
        learning_rate=a.lr, lr_decay_epochs=a.lr_decay_epochs, image_size=(a.height, a.width),
        num_train_ids=a.ids, num_test_ids=a.ids, seed=a.seed,
    )
    run_demo(config, export=not a.no_export)


if __name__ == "__main__":
    main()
