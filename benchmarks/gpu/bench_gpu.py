"""One-shot GPU benchmark: MMGA (Keras 3 on JAX) against the PyTorch re-ID baseline, images/s.

Measures, on one GPU, training and inference images/s of

- MMGA on the JAX backend, float32 and mixed bfloat16 (`keras_mmga.models.MMGA`,
  its own `train_step` and `compile()` recipe: ParamGroupSGD, all losses);
- the baseline the field trains instead (`reid_baseline.py`): ResNet50 last
  stride 1 + BNNeck, label-smoothed softmax + batch-hard triplet, Adam, AMP
  bfloat16 (and float32), channels-last, cudnn.benchmark; `--torch-compile`
  adds a `torch.compile` run;

all at the same input size and PK batch (default 384x128, P=24 x K=4 = 96),
from one random batch held in device memory (the step is what is measured, not
a data pipeline). Each configuration runs in its own process (JAX and PyTorch
never share the GPU); the first steps (compilation, cuDNN autotuning) are
warm-up and excluded; the figure is the batch over the median step time, each
step timed on its own up to device completion. "float32" means TF32 tensor-core
math on both sides: JAX's default on such GPUs, switched on for PyTorch to match.
Prints a table and the MMGA / baseline ratios and writes every figure and
raw step time to a JSON file (after each configuration, so a run cut short
keeps what it measured).

The Keras side imports no TensorFlow (an import of it is an error in the
child process): the GPU machine has none.

Usage:
    python benchmarks/gpu/bench_gpu.py --out bench_gpu.json        # on the GPU machine (run.sh)
    python benchmarks/gpu/bench_gpu.py --tiny                       # CPU smoke test: 64x32, batch 8, 2 steps
"""

import argparse
import importlib.abc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# name -> (framework, precision, torch.compile)
JOBS = {
    "torch-bf16": ("torch", "bfloat16", False),
    "keras-bf16": ("keras", "bfloat16", False),
    "keras-fp32": ("keras", "float32", False),
    "torch-fp32": ("torch", "float32", False),
    "torch-compile-bf16": ("torch", "bfloat16", True),
}
DEFAULT_JOBS = ("torch-bf16", "keras-bf16", "keras-fp32", "torch-fp32")

# (MMGA job, baseline job): the ratios printed, MMGA images/s over the baseline's.
RATIOS = (
    ("keras-bf16", "torch-bf16"),
    ("keras-fp32", "torch-bf16"),
    ("keras-fp32", "torch-fp32"),
    ("keras-bf16", "torch-compile-bf16"),
)

_MIN_JOB_SECONDS = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="CPU smoke test: 64x32, P=2 x K=4, 1 warm-up + 2 timed steps, --device cpu"
    )
    parser.add_argument("--device", choices=("gpu", "cpu"), default=None, help="default: gpu (cpu with --tiny)")
    parser.add_argument("--height", type=int, default=None, help="default 384 (64 with --tiny)")
    parser.add_argument("--width", type=int, default=None, help="default 128 (32 with --tiny)")
    parser.add_argument("--p", type=int, default=None, help="identities per batch, default 24 (2 with --tiny)")
    parser.add_argument("--k", type=int, default=4, help="images per identity (4)")
    parser.add_argument("--num-classes", type=int, default=751, help="training identities (Market-1501: 751)")
    parser.add_argument("--variant", default="mmga", help="MMGA variant (mmga)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps, default 5 (1 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps, default 20 (2 with --tiny)")
    parser.add_argument("--jobs", default=",".join(DEFAULT_JOBS), help=f"comma list of {', '.join(JOBS)}")
    parser.add_argument("--torch-compile", action="store_true", help="also run torch-compile-bf16")
    parser.add_argument("--torch-optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all jobs; a job that would start with < 20 s left is skipped (default 450, 1800 with --tiny)",
    )
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/gpu/bench_gpu[_tiny].json)")
    parser.add_argument("--job", choices=tuple(JOBS), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--job-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tiny = dict(device="cpu", height=64, width=32, p=2, warmup=1, steps=2, budget=1800.0)
    full = dict(device="gpu", height=384, width=128, p=24, warmup=5, steps=20, budget=450.0)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.height % 16 or args.width % 16:
        parser.error(f"--height and --width must be divisible by 16, got {args.height}x{args.width}")
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1 (the first step compiles)")
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        parser.error(f"--jobs: unknown {unknown}; known: {', '.join(JOBS)}")
    if args.torch_compile and "torch-compile-bf16" not in jobs:
        jobs.append("torch-compile-bf16")
    args.job_list = jobs
    if args.out is None:
        args.out = os.path.join(HERE, "bench_gpu_tiny.json" if args.tiny else "bench_gpu.json")
    return args


# ---------------------------------------------------------------- shared by the jobs


def log(message):
    print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synthetic_batch(args):
    """One PK batch: RGB pixels in [0, 255] (NHWC), P identities x K labels, whole/upper/bottom masks."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = args.p * args.k
    images = rng.uniform(0, 255, (n, args.height, args.width, 3)).astype("float32")
    labels = np.repeat(rng.choice(args.num_classes, args.p, replace=False), args.k).astype("int32")
    masks = (rng.random((n, args.height // 16, args.width // 16, 3)) < 0.5).astype("float32")
    return images, labels, masks


def time_calls(fn, warmup, steps, label, batch):
    """Times `fn` (which returns once the device is done): `warmup` untimed calls, then `steps` timed ones."""
    from keras_mmga.progress import Progress

    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    log(f"{label}: first call (compile / autotune) {first:.1f} s")
    for _ in range(warmup - 1):
        fn()
    seconds = []
    with Progress(steps, "steps", label=label) as bar:
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
            bar.update(1)
    median = statistics.median(seconds)
    log(f"{label}: median {median * 1e3:.1f} ms/step, {batch / median:.1f} images/s")
    return {
        "batch": batch,
        "first_call_s": first,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "median_s": median,
        "mean_s": statistics.fmean(seconds),
        "min_s": min(seconds),
        "images_per_s": batch / median,
        "step_seconds": seconds,
    }


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow` fail, as on the GPU machine (which has none)."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(
                f"No module named {name!r} (the GPU benchmark runs without TensorFlow)", name=name
            )
        return None


# ---------------------------------------------------------------- MMGA on Keras / JAX


def keras_job(args, precision, record):
    sys.meta_path.insert(0, _NoTensorFlow())
    import jax
    import keras

    from keras_mmga.models import MMGA

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"KERAS_BACKEND must be jax, Keras runs on {keras.backend.backend()}")
    device = jax.devices()[0]
    if args.device == "gpu" and device.platform not in ("gpu", "cuda"):
        raise RuntimeError(f"JAX found no GPU (first device: {device}); is the CUDA plugin installed?")
    record.update(
        {
            "env": {
                "keras": keras.__version__,
                "jax": jax.__version__,
                "device": str(device),
                "device_kind": getattr(device, "device_kind", ""),
                "jax_default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", "?")),
            }
        }
    )
    log(f"Keras {keras.__version__} on JAX {jax.__version__}, {device}, {precision}")

    keras.utils.set_random_seed(0)
    model = MMGA(
        args.num_classes,
        variant=args.variant,
        input_shape=(args.height, args.width, 3),
        backbone_weights=None,
        dtype="mixed_bfloat16" if precision == "bfloat16" else "float32",
    )
    model.compile(steps_per_epoch=1000)
    if not model.built:
        model.build((None, args.height, args.width, 3))
    record["parameters"] = model.count_params()
    images, labels, masks = synthetic_batch(args)
    x = jax.device_put(images)
    y = {"labels": jax.device_put(labels), "masks": jax.device_put(masks)}
    batch = images.shape[0]

    # Inference first (on the initial weights: its speed does not depend on them),
    # so that its figure stands even if training fails.
    model.make_predict_function()
    pstate = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    features = None

    def infer():
        nonlocal pstate, features
        features, pstate = model.predict_function(pstate, iter([(x,)]))
        jax.block_until_ready(features)

    record["infer"] = time_calls(infer, args.warmup, args.steps, f"MMGA-JAX {precision} infer", batch)
    record["infer"]["feature_shape"] = list(features.shape)
    for variable, value in zip(model.trainable_variables + model.non_trainable_variables, pstate[0] + pstate[1]):
        variable.assign(value)  # the compiled function donated the old buffers

    # The first step goes through the public API (builds the model and the
    # optimizer, jit-compiles the train step); later steps call the compiled
    # function as `fit` does, with the state kept on the device.
    start = time.perf_counter()
    first_logs = model.train_on_batch(x, y, return_dict=True)
    compile_s = time.perf_counter() - start
    log(f"train: build + compile + first step {compile_s:.1f} s, loss {first_logs['loss']:.4f}")
    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    state = tuple([v.value for v in group] for group in groups)
    logs = {}

    def train():
        nonlocal state, logs
        logs, state = model.train_function(state, iter([(x, y, None)]))
        jax.block_until_ready((logs, state))

    record["train"] = time_calls(train, args.warmup, args.steps, f"MMGA-JAX {precision} train", batch)
    record["train"]["compile_and_first_step_s"] = compile_s
    record["train"]["loss_first"] = float(first_logs["loss"])
    record["train"]["loss_last"] = float(logs["loss"])
    for group, values in zip(groups, state):
        for variable, value in zip(group, values):
            variable.assign(value)


# ---------------------------------------------------------------- PyTorch baseline


def torch_job(args, precision, compiled, record):
    import torch

    sys.path.insert(0, HERE)
    from reid_baseline import ReidBaseline, make_infer_step, make_optimizer, make_train_step

    if args.device == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA device")
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        # float32 = TF32 tensor-core math, as JAX does by default on this GPU.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        sync = torch.cuda.synchronize
        device_name = torch.cuda.get_device_name()
    else:
        device = torch.device("cpu")
        sync = lambda: None  # noqa: E731
        device_name = platform.processor() or "cpu"
    amp = torch.bfloat16 if precision == "bfloat16" else None
    torch.manual_seed(0)
    model = ReidBaseline(args.num_classes).to(device, memory_format=torch.channels_last)
    record.update(
        {
            "env": {
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "device": device_name,
                "backbone": model.backbone_source,
                "optimizer": args.torch_optimizer,
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "tf32": bool(torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32),
                "torch_compile": compiled,
                "channels_last": True,
                "autocast": str(amp),
            },
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    )
    log(
        f"PyTorch {torch.__version__} on {device_name}, {precision}{' + torch.compile' if compiled else ''}, "
        f"backbone: {model.backbone_source}"
    )
    images, labels, _ = synthetic_batch(args)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)
    target = torch.from_numpy(labels).long().to(device)
    batch = images.shape[0]
    net = torch.compile(model) if compiled else model
    optimizer = make_optimizer(model, args.torch_optimizer)
    step = make_train_step(net, optimizer, amp)
    losses = []

    def train():
        losses.append(step(x, target))
        sync()

    name = f"baseline-torch {precision}{'+compile' if compiled else ''}"
    # Inference first, as for MMGA: its figure stands even if training fails.
    model.eval()
    infer_step = make_infer_step(net, amp)
    features = []

    def infer():
        features[:] = [infer_step(x)]
        sync()

    record["infer"] = time_calls(infer, args.warmup, args.steps, f"{name} infer", batch)
    record["infer"]["feature_shape"] = list(features[0].shape)

    model.train()
    record["train"] = time_calls(train, args.warmup, args.steps, f"{name} train", batch)
    record["train"]["loss_first"] = float(losses[0])
    record["train"]["loss_last"] = float(losses[-1])


# ---------------------------------------------------------------- orchestration


def run_child(args):
    framework, precision, compiled = JOBS[args.job]
    record = dict(job=args.job, framework=framework, precision=precision)
    status = 0
    try:
        if framework == "keras":
            keras_job(args, precision, record)
        else:
            torch_job(args, precision, compiled, record)
    except Exception as error:  # keep what was measured (inference runs first), say what failed
        traceback.print_exc()
        record["error"] = f"{type(error).__name__}: {error}"[:2000]
        status = 1
    with open(args.job_out, "w") as f:
        json.dump(record, f)
    return status


def _child_env(args):
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["JAX_PLATFORMS"] = "cpu" if args.device == "cpu" else "cuda"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO not in paths:
        paths.append(REPO)  # after any folder of carried wheels
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _child_argv(args, job, job_out):
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--job",
        job,
        "--job-out",
        job_out,
        "--device",
        args.device,
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--p",
        str(args.p),
        "--k",
        str(args.k),
        "--num-classes",
        str(args.num_classes),
        "--variant",
        args.variant,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--torch-optimizer",
        args.torch_optimizer,
    ]
    return argv + (["--tiny"] if args.tiny else [])


def ratios(jobs):
    out = {}
    for mmga, baseline in RATIOS:
        for phase in ("train", "infer"):
            a, b = jobs.get(mmga, {}).get(phase), jobs.get(baseline, {}).get(phase)
            if a and b:
                out[f"{phase}: {mmga} / {baseline}"] = a["images_per_s"] / b["images_per_s"]
    return out


def report(result):
    lines = [
        f"{'job':<20} {'train img/s':>12} {'ms/step':>9} {'infer img/s':>12} {'ms/batch':>9} "
        f"{'first call s (train / infer)':>30}",
    ]
    for name, job in result["jobs"].items():
        train, infer = job.get("train"), job.get("infer")
        cell = lambda t, key, scale: f"{t[key] * scale:.1f}" if t else "-"  # noqa: E731
        # Keras: the first train_on_batch (build + compile + step) precedes the timed function.
        compile_cell = f"{train.get('compile_and_first_step_s', train['first_call_s']):.1f}" if train else "-"
        lines.append(
            f"{name:<20} {cell(train, 'images_per_s', 1):>12} {cell(train, 'median_s', 1e3):>9} "
            f"{cell(infer, 'images_per_s', 1):>12} {cell(infer, 'median_s', 1e3):>9} "
            f"{compile_cell:>16} / {cell(infer, 'first_call_s', 1):<6}"
        )
        if "error" in job:
            lines.append(f"{'':<20} error: {job['error'].splitlines()[0][:100]}")
    lines.append("")
    lines.append("MMGA / baseline images/s:")
    for key, value in result["ratios"].items():
        lines.append(f"  {key:<45} {value:.3f}")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.job:
        return run_child(args)
    deadline = time.monotonic() + args.budget
    settings = {
        k: getattr(args, k)
        for k in (
            "tiny",
            "device",
            "height",
            "width",
            "p",
            "k",
            "num_classes",
            "variant",
            "warmup",
            "steps",
            "torch_optimizer",
            "budget",
        )
    }
    result = {
        "kind": "CPU smoke test (not a figure)" if args.tiny or args.device == "cpu" else "GPU benchmark",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "settings": dict(settings, batch=args.p * args.k),
        "jobs": {},
        "ratios": {},
    }
    log(
        f"{result['kind']}: {args.height}x{args.width}, batch {args.p}x{args.k}={args.p * args.k}, "
        f"jobs {', '.join(args.job_list)}, budget {args.budget:.0f} s"
    )
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.job_list:
            left = deadline - time.monotonic()
            if left < _MIN_JOB_SECONDS:
                result["jobs"][job] = {"error": f"skipped: {left:.0f} s of the budget left"}
                log(f"{job}: skipped, {left:.0f} s left")
                continue
            job_out = os.path.join(tmp, f"{job}.json")
            start = time.monotonic()
            try:
                proc = subprocess.run(_child_argv(args, job, job_out), env=_child_env(args), timeout=left)
                record = {}
                if os.path.exists(job_out):
                    with open(job_out) as f:
                        record = json.load(f)
                if proc.returncode != 0:
                    record.setdefault("error", f"exit code {proc.returncode} (traceback above)")
            except subprocess.TimeoutExpired:
                record = {"error": f"stopped at the budget after {left:.0f} s"}
            failed = failed or "error" in record
            result["jobs"][job] = record
            result["jobs"][job]["wall_s"] = time.monotonic() - start
            result["ratios"] = ratios(result["jobs"])
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
    print(report(result))
    print(f"\n{result['kind']}; figures and step times in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
