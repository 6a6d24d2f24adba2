"""`keras-mmga demo` (`make demo`): synthetic dataset -> train MMGA -> evaluate (vs untrained) -> pictures -> ONNX.

Runs on a CPU in about 5 minutes with no downloads; writes demo_output/ and
exported/demo_<variant>.onnx.
"""

from keras_mmga.cli.shared import check_positive
from keras_mmga.engine.config import DemoConfig, defaults
from keras_mmga.settings import VARIANT_NAMES

D = defaults(DemoConfig)


def add_arguments(p):
    p.description = __doc__
    p.add_argument("--output", default=D["out_dir"], help="folder for the data, run folder, pictures, results.json")
    p.add_argument("--export-dir", default=D["export_dir"], help="where the ONNX model goes")
    p.add_argument("--variant", default=D["variant"], choices=VARIANT_NAMES, help="model variant")
    p.add_argument("--epochs", type=int, default=D["epochs"], help="epochs of --steps-per-epoch steps")
    p.add_argument("--steps-per-epoch", type=int, default=D["steps_per_epoch"], help="the demo's own budget")
    p.add_argument("--lr", type=float, default=D["learning_rate"], help="learning rate (backbone: half)")
    p.add_argument("--lr-decay-epochs", type=int, default=D["lr_decay_epochs"], help="epochs between halvings")
    p.add_argument("--height", type=int, default=D["image_size"][0], help="input height (divisible by 16)")
    p.add_argument("--width", type=int, default=D["image_size"][1], help="input width (divisible by 16)")
    p.add_argument("--ids", type=int, default=D["num_train_ids"], help="training (and test) identities")
    p.add_argument("--seed", type=int, default=D["seed"], help="seeds data, initialisation and sampling")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    return p


def run(a):
    check_positive(a, "epochs", "steps_per_epoch", "ids", "lr_decay_epochs")
    config = DemoConfig(
        out_dir=a.output,
        export_dir=a.export_dir,
        variant=a.variant,
        epochs=a.epochs,
        steps_per_epoch=a.steps_per_epoch,
        learning_rate=a.lr,
        lr_decay_epochs=a.lr_decay_epochs,
        image_size=(a.height, a.width),
        num_train_ids=a.ids,
        num_test_ids=a.ids,
        seed=a.seed,
    )
    # run_demo checks --output and --export-dir before any work.
    from keras_mmga.engine.demo import run_demo

    if not a.quiet:
        run_demo(config, export=not a.no_export)
        return 0
    # --quiet: only the result table.
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        report = run_demo(config, export=not a.no_export)
    print(report["table"])
    return 0
