"""The torchvision-layout backbone (`resnet50_v1.5`) and its torch-free weight readers.

The expectation is independent of Keras: a NumPy forward (explicit convolution loops, PyTorch's
padding and BatchNorm) of the stem and of two bottleneck blocks, one of them strided, from the same
state dict. benchmarks/check_torchvision_backbone.py compares with torchvision itself.
"""

import io
import json
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from keras_mmga.models import torch_weights
from keras_mmga.models.backbone import build_resnet50_stages
from keras_mmga.models.mmga_backbone import MMGABackbone

BN_EPS = 1e-5


def _state_dict(seed=0):
    """A random ResNet50 state dict in torchvision naming, with non-trivial BN statistics and an fc."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, cout, cin, k):
        state[name + ".weight"] = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(
            np.float32
        )

    def bn(name, c):
        state[name + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[name + ".bias"] = (rng.standard_normal(c) * 0.1).astype(np.float32)
        state[name + ".running_mean"] = (rng.standard_normal(c) * 0.1).astype(np.float32)
        state[name + ".running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[name + ".num_batches_tracked"] = np.array(7, np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            conv(p + ".conv1", width, cin, 1), bn(p + ".bn1", width)
            conv(p + ".conv2", width, width, 3), bn(p + ".bn2", width)
            conv(p + ".conv3", 4 * width, width, 1), bn(p + ".bn3", 4 * width)
            if b == 0:
                conv(p + ".downsample.0", 4 * width, cin, 1), bn(p + ".downsample.1", 4 * width)
            cin = 4 * width
    state["fc.weight"] = rng.standard_normal((1000, 2048)).astype(np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    return state


def _write_safetensors(path, state):
    header, blobs, offset = {}, [], 0
    for name, value in state.items():
        data = np.ascontiguousarray(value).tobytes()
        dtype = {np.float32: "F32", np.int64: "I64"}[value.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def _write_torch_zip(path, state, monkeypatch, legacy=False):
    """What `torch.save(state_dict, path)` writes: archive/data.pkl + archive/data/<key>, without torch.

    The pickle names torch's globals (torch._utils._rebuild_tensor_v2, torch.FloatStorage); stand-in
    modules make those names resolvable while pickling only.
    """
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    storages = {}
    for cls_name in ("FloatStorage", "LongStorage"):
        cls = type(cls_name, (), {"__module__": "torch", "__qualname__": cls_name})
        setattr(torch_mod, cls_name, cls)
        storages[cls_name] = cls
    torch_mod._utils = utils_mod
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Tensor:
        def __init__(self, key, value):
            self.key, self.value = key, value

        def __reduce__(self):
            v = self.value
            strides = tuple(s // v.itemsize for s in v.strides)
            return (_rebuild_tensor_v2, (("storage", self.key), 0, v.shape, strides, False, {}))

    files = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "storage":
                key = obj[1]
                value = tensors[key]
                cls = storages["FloatStorage" if value.dtype == np.float32 else "LongStorage"]
                return ("storage", cls, key, "cpu", value.size) + ((None,) if legacy else ())
            return None

    tensors = {str(i): np.ascontiguousarray(v) for i, v in enumerate(state.values())}
    payload = {name: Tensor(str(i), None) for i, name in enumerate(state)}
    for i, name in enumerate(state):
        payload[name].value = tensors[str(i)]
    buffer = io.BytesIO()
    if legacy:  # torch.save before 1.6: magic, protocol, sys info, the state, the keys, then the storages
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, buffer, protocol=2)
    Pickler(buffer, protocol=2).dump(payload)
    if legacy:
        pickle.dump(list(tensors), buffer, protocol=2)
        for value in tensors.values():
            buffer.write(struct.pack("<q", value.size) + value.tobytes())
        path.write_bytes(buffer.getvalue())
        monkeypatch.delitem(sys.modules, "torch")
        monkeypatch.delitem(sys.modules, "torch._utils")
        return
    files["archive/data.pkl"] = buffer.getvalue()
    files["archive/byteorder"] = b"little"
    for key, value in tensors.items():
        files[f"archive/data/{key}"] = value.tobytes()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")


# --- an independent NumPy forward (PyTorch semantics: symmetric zero padding, eval-mode BN) ---
def _conv(x, w, stride=1, pad=0):
    """x (H, W, Cin), w (Cout, Cin, k, k) in PyTorch's layout."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0))).astype(np.float64)
    cout, cin, k, _ = w.shape
    h = (x.shape[0] - k) // stride + 1
    wd = (x.shape[1] - k) // stride + 1
    out = np.zeros((h, wd, cout))
    for i in range(k):
        for j in range(k):
            patch = x[i : i + stride * (h - 1) + 1 : stride, j : j + stride * (wd - 1) + 1 : stride, :]
            out += patch @ w[:, :, i, j].T.astype(np.float64)
    return out


def _bn(x, state, name):
    g, b, m, v = (state[f"{name}.{p}"].astype(np.float64) for p in ("weight", "bias", "running_mean", "running_var"))
    return (x - m) / np.sqrt(v + BN_EPS) * g + b


def _bottleneck(x, state, p, stride):
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    y = relu(_bn(_conv(x, state[p + ".conv1.weight"]), state, p + ".bn1"))
    y = relu(_bn(_conv(y, state[p + ".conv2.weight"], stride, 1), state, p + ".bn2"))
    y = _bn(_conv(y, state[p + ".conv3.weight"]), state, p + ".bn3")
    shortcut = x
    if p + ".downsample.0.weight" in state:
        shortcut = _bn(_conv(x, state[p + ".downsample.0.weight"], stride), state, p + ".downsample.1")
    return relu(y + shortcut)


def _stem(x, state):
    y = np.maximum(_bn(_conv(x, state["conv1.weight"], 2, 3), state, "bn1"), 0)
    y = np.pad(y, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)  # PyTorch's max pool pads with -inf
    h, w = (y.shape[0] - 3) // 2 + 1, (y.shape[1] - 3) // 2 + 1
    return np.max([y[i : i + 2 * h - 1 : 2, j : j + 2 * w - 1 : 2] for i in range(3) for j in range(3)], axis=0)


@pytest.fixture(scope="module")
def state():
    return _state_dict()


@pytest.fixture(scope="module")
def weights_dir(state, tmp_path_factory):
    """A timm-style folder holding `state` as model.safetensors, written once for the module."""
    folder = tmp_path_factory.mktemp("timm_resnet50")
    _write_safetensors(folder / "model.safetensors", state)
    return folder


def test_safetensors_and_torch_zip_readers_return_the_state_dict(tmp_path, monkeypatch):
    # The readers know nothing of ResNet50: a few tensors of each stored dtype and rank suffice.
    rng = np.random.default_rng(2)
    state = {
        "layer1.0.conv1.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
        "bn1.running_var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "bn1.num_batches_tracked": np.array(7, np.int64),
        "fc.weight": rng.standard_normal((10, 16)).astype(np.float32),
    }
    _write_safetensors(tmp_path / "model.safetensors", state)
    _write_torch_zip(tmp_path / "resnet50.pth", state, monkeypatch)
    _write_torch_zip(tmp_path / "resnet50_legacy.pth", state, monkeypatch, legacy=True)
    for path in (tmp_path / "model.safetensors", tmp_path, tmp_path / "resnet50.pth", tmp_path / "resnet50_legacy.pth"):
        read = torch_weights.read_state_dict(path)
        assert set(read) == set(state)
        for name, value in state.items():
            assert read[name].dtype == value.dtype, name
            np.testing.assert_array_equal(read[name], value, err_msg=name)


def test_resnet50_v15_computes_pytorchs_stem_and_bottlenecks(state, weights_dir):
    stages = build_resnet50_stages((64, 32, 3), weights=str(weights_dir), backbone="resnet50_v1.5")
    stem = stages["stem"]
    x = np.random.default_rng(1).standard_normal((1, 64, 32, 3)).astype(np.float32)
    taps = ["pool1_pool", "conv2_block1_out", "conv2_block3_out", "conv3_block1_out"]
    import keras

    probe = keras.Model(stem.input, [stem.get_layer(n).output for n in taps])
    pool, block1, block3, strided = (np.asarray(t)[0] for t in probe(x))

    expected_pool = _stem(x[0].astype(np.float64), state)
    np.testing.assert_allclose(pool, expected_pool, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(block1, _bottleneck(pool.astype(np.float64), state, "layer1.0", 1), rtol=1e-4, atol=1e-4)
    # The strided block: v1.5 puts the stride on the 3x3 conv (v1 would put it on conv1).
    expected = _bottleneck(block3.astype(np.float64), state, "layer2.0", 2)
    assert strided.shape == expected.shape == (8, 4, 512)
    np.testing.assert_allclose(strided, expected, rtol=1e-4, atol=1e-4)


def test_v15_has_the_same_taps_and_last_stride_1(state):
    stages = build_resnet50_stages((64, 32, 3), weights=None, backbone="resnet50_v1.5")
    assert stages["stem"].output.shape[1:] == (8, 4, 512)
    assert stages["stage3"].output.shape[1:] == (4, 2, 1024)
    assert stages["stage4"].output.shape[1:] == (4, 2, 2048)
    # No conv biases (torchvision has none): a v1.5 checkpoint has exactly the tensors the model has.
    n_weights = sum(len(m.weights) for m in stages.values())
    n_state = sum(1 for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked"))
    assert n_weights == n_state


def test_preprocessing_follows_the_backbone_and_config_round_trips(weights_dir):
    v15 = MMGABackbone(input_shape=(64, 32, 3), backbone="resnet50_v1.5", backbone_weights=str(weights_dir))
    v1 = MMGABackbone(input_shape=(64, 32, 3), backbone_weights=None)
    assert (v15.preprocessing, v1.preprocessing) == ("torch", "caffe")
    info = v15.backbone_weights_info
    import hashlib

    assert info["sha256"] == hashlib.sha256((weights_dir / "model.safetensors").read_bytes()).hexdigest()
    config = v15.get_config()
    again = MMGABackbone.from_config(config)
    assert (again.backbone, again.preprocessing, again.backbone_weights_info) == ("resnet50_v1.5", "torch", info)
    # A config written before the backbone choice existed builds the Keras layout.
    old = {k: v for k, v in v1.get_config().items() if k not in ("backbone", "backbone_weights_info")}
    assert MMGABackbone.from_config(old).backbone == "resnet50"


def test_bad_weights_are_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        torch_weights.read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        torch_weights.read_state_dict(tmp_path)
    with pytest.raises(ValueError, match="torchvision / timm"):
        build_resnet50_stages((64, 32, 3), weights="imagenet", backbone="resnet50_v1.5")
    _write_safetensors(tmp_path / "small.safetensors", {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})
    with pytest.raises(ValueError, match="tensors missing"):
        build_resnet50_stages((64, 32, 3), weights=str(tmp_path / "small.safetensors"), backbone="resnet50_v1.5")
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_resnet50_stages((64, 32, 3), weights=None, backbone="resnet101")
    (tmp_path / "evil.pth").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(print))  # a global outside the tensor allow-list
    with pytest.raises(ValueError, match="refused to load builtins.print"):
        torch_weights.read_state_dict(tmp_path / "evil.pth")


def test_keras_hub_preset_folder_loads_into_v15_with_the_same_function(tmp_path):
    """keras-hub's own ResNetBackbone (last stride 1), saved as a preset, computes what our v1.5 computes."""
    import keras
    import keras_hub  # the test extra installs it

    keras.utils.set_random_seed(3)
    hub = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 1],
        block_type="bottleneck_block",
        image_shape=(64, 32, 3),
    )
    # Non-trivial BN statistics so that their mapping is tested too.
    rng = np.random.default_rng(4)
    for layer in hub.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.standard_normal(c).astype(np.float32) * 0.1)
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
    hub.save_to_preset(str(tmp_path / "preset"))
    stages = build_resnet50_stages((64, 32, 3), weights=f"keras_hub:{tmp_path / 'preset'}", backbone="resnet50_v1.5")
    x = np.random.default_rng(5).standard_normal((2, 64, 32, 3)).astype(np.float32)
    ours = np.asarray(stages["stage4"](stages["stage3"](stages["stem"](x))))
    np.testing.assert_allclose(ours, np.asarray(hub(x)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConnectionError, match="keras-hub preset"):
        build_resnet50_stages((64, 32, 3), weights=f"keras_hub:{tmp_path / 'no_such_preset'}", backbone="resnet50_v1.5")
