"""`make demo`: synthetic dataset → train MMGA → evaluate (vs untrained) → pictures → ONNX."""

import argparse

from keras_mmga.engine.demo import DemoConfig, run_demo


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=DemoConfig.out_dir)
    p.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    p.add_argument("--variant", default=DemoConfig.variant)
    p.add_argument("--no-export", action="store_true")
    a = p.parse_args(argv)
    run_demo(DemoConfig(out_dir=a.out, epochs=a.epochs, variant=a.variant), export=not a.no_export)


if __name__ == "__main__":
    main()
