"""Starts train_steps.py processes and reads back their results."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "train_steps.py")


def spawn(argv, log, tf_config=None):
    """A Python process running `argv` on the CPU, output to the file `log`,
    with `tf_config` (a dict) as its TF_CONFIG or none at all."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with open(log, "w") as log_file:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, *map(str, argv)], stdout=log_file, stderr=subprocess.STDOUT, env=env)


def start(out, *args, log=None):
    return spawn([SCRIPT, out, *args], log or (str(out) + ".log"))


def finish(procs, timeout):
    """Waits for every process; kills all of them if any runs past `timeout`."""
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def result(out):
    """(weights, info) of a finished run; fails with the run's log if it crashed."""
    out = str(out)
    if not os.path.exists(out):
        with open(out + ".log") as f:
            raise AssertionError(f"run {out} failed:\n{f.read()[-4000:]}")
    with np.load(out) as z:
        weights = [z[f"arr_{i}"] for i in range(len(z.files))]
    with open(out + ".json") as f:
        return weights, json.load(f)


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
