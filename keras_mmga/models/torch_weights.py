"""PyTorch ResNet50 checkpoints (torchvision, timm) read without PyTorch, as NumPy state dicts.

The paper starts from torchvision's ImageNet ResNet50. Its published weights come in two formats,
both readable here with NumPy alone, so a machine without PyTorch can build the paper's start:

* a `torch.save` file (`resnet50-0676ba61.pth`, `resnet50-11ad3fa6.pth`, a `pytorch_model.bin`; the
  zip format of PyTorch >= 1.6 and the older one):
  a zip of one pickle plus raw tensor storages. The pickle is read with a restricted unpickler
  that knows only tensors, storages and ordered dicts, so a file cannot run code;
* a safetensors file (`model.safetensors` of a timm / Hugging Face folder such as
  `timm/resnet50.tv_in1k` or `timm/resnet50.a1_in1k`): a JSON header and raw little-endian data.

torchvision and timm name ResNet50's tensors the same way (`conv1.weight`, `bn1.running_mean`,
`layer3.5.conv2.weight`, `layer4.0.downsample.0.weight`, `fc.weight`), which `keras_layer_weights`
maps onto the Keras layer names of `keras_mmga.models.backbone` (`conv4_block6_2_conv`, ...).

Example:
```python
state = read_state_dict("resnet50-11ad3fa6.pth")      # {"conv1.weight": (64, 3, 7, 7) array, ...}
weights = keras_layer_weights(state)                   # {"conv1_conv": [kernel], "conv1_bn": [...], ...}
```
"""

import collections
import json
import os
import pickle
import struct
import zipfile

import numpy as np

# ResNet50's blocks per torchvision layer; layer L is Keras's stage conv{L+1}.
RESNET50_BLOCKS = (3, 4, 6, 3)
STATE_DICT_FILES = ("model.safetensors", "pytorch_model.bin")

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": "bfloat16",
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def resolve_weights_file(path):
    """The state-dict file of `path`: the file itself, or the known file inside a folder.

    Raises:
        FileNotFoundError: no such file or folder, or a folder without `model.safetensors` /
            `pytorch_model.bin`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in STATE_DICT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(
            f"Backbone weights folder {path!r} holds neither {' nor '.join(STATE_DICT_FILES)} "
            f"(a timm / Hugging Face folder such as resnet50.tv_in1k has model.safetensors)."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Backbone weights not found: {path!r}. Expected a torchvision .pth file (e.g. "
            "resnet50-11ad3fa6.pth), a .safetensors file, or a timm / Hugging Face model folder."
        )
    return path


def read_state_dict(path):
    """`{name: np.ndarray}` of a PyTorch checkpoint file or folder (see the module docstring).

    Raises:
        FileNotFoundError: see `resolve_weights_file`.
        ValueError: the file is neither a safetensors nor a zip-format `torch.save` file, or its
            pickle holds something other than tensors in (nested) dicts.
    """
    path = resolve_weights_file(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        state = _read_torch_zip(path)
    elif head[:2] == b"\x80\x02":  # a protocol-2 pickle: torch.save before PyTorch 1.6
        state = _read_torch_legacy(path)
    elif len(head) == 8 and _looks_like_safetensors(path, head):
        state = _read_safetensors(path)
    else:
        raise ValueError(f"{path!r} is neither a safetensors file nor a torch.save file.")
    # Checkpoints saved from a training wrapper nest the weights or prefix their names.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    if not state or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path!r} does not hold a state dict of tensors.")
    for prefix in ("module.", "model.", "backbone."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def keras_layer_weights(state):
    """Keras layer name → list of weights, for the torchvision-layout backbone (`resnet50_v1.5`).

    Convolution kernels go from PyTorch's OIHW to Keras's HWIO; each BatchNorm gives
    `[gamma, beta, moving_mean, moving_variance]`. The classifier (`fc.*`) and
    `num_batches_tracked` are ignored.

    Raises:
        ValueError: a tensor of ResNet50 is missing or has another shape (names the first ones).
    """
    out, missing = {}, []

    def conv(torch_name, keras_name):
        w = state.get(torch_name + ".weight")
        if w is None:
            missing.append(torch_name + ".weight")
            return
        out[keras_name] = [np.transpose(np.asarray(w, np.float32), (2, 3, 1, 0))]

    def bn(torch_name, keras_name):
        names = [f"{torch_name}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
        found = [state.get(n) for n in names]
        missing.extend(n for n, v in zip(names, found) if v is None)
        if all(v is not None for v in found):
            out[keras_name] = [np.asarray(v, np.float32) for v in found]

    conv("conv1", "conv1_conv")
    bn("bn1", "conv1_bn")
    for layer, blocks in enumerate(RESNET50_BLOCKS, start=1):
        for b in range(blocks):
            src, dst = f"layer{layer}.{b}", f"conv{layer + 1}_block{b + 1}"
            for j in (1, 2, 3):
                conv(f"{src}.conv{j}", f"{dst}_{j}_conv")
                bn(f"{src}.bn{j}", f"{dst}_{j}_bn")
            if b == 0:
                conv(f"{src}.downsample.0", f"{dst}_0_conv")
                bn(f"{src}.downsample.1", f"{dst}_0_bn")
    if missing:
        raise ValueError(
            f"Not a ResNet50 state dict in torchvision / timm naming: {len(missing)} tensors missing, "
            f"e.g. {missing[:3]} (found e.g. {sorted(state)[:3]})."
        )
    return out


def _looks_like_safetensors(path, head):
    (n,) = struct.unpack("<Q", head)
    return 2 <= n <= os.path.getsize(path) - 8


def _read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except ValueError as err:
            raise ValueError(f"{path!r}: unreadable safetensors header ({err}).") from err
        data = f.read()
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ValueError(f"{path!r}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}.")
        start, end = info["data_offsets"]
        state[name] = _as_array(data[start:end], dtype).reshape(info["shape"])
    return state


def _as_array(buffer, dtype):
    if dtype == "bfloat16":  # the top 16 bits of a float32
        return (np.frombuffer(buffer, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(buffer, np.dtype(dtype).newbyteorder("<")).copy()


class _Storage:
    """A tensor storage's dtype, as the pickle names it (`torch.FloatStorage`)."""

    def __init__(self, dtype):
        self.dtype = dtype


class _LegacyStorage:
    """A storage of a pre-1.6 file, whose bytes follow the pickle: tensors on it are built afterwards."""

    def __init__(self, dtype):
        self.dtype, self.array = dtype, None


class _LazyTensor:
    def __init__(self, storage, *args):
        self.storage, self.args = storage, args


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if isinstance(storage, _LegacyStorage):
        return _LazyTensor(storage, offset, size, stride)
    # `storage` is already an array of the tensor's dtype (bfloat16 widened to float32), so the
    # element strides of the pickle scale by its itemsize.
    flat = np.asarray(storage)
    if not size:
        return np.array(flat[offset])
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=tuple(size), strides=tuple(s * flat.itemsize for s in stride)
    )
    return np.array(view)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch.save pickle of tensors only: any other global is refused."""

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, hooks: data
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: a weights file holds tensors only (is this a full model "
            "pickle? save model.state_dict() instead)."
        )

    def persistent_load(self, pid):
        kind, storage, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        if self._archive is None:  # pre-1.6 format: the bytes come after the pickle
            if len(pid) > 5 and pid[5] is not None:
                raise pickle.UnpicklingError("storage views of the pre-1.6 format are not supported")
            return self._storages.setdefault(key, _LegacyStorage(storage.dtype))
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            self._storages[key] = _as_array(raw, storage.dtype)
        return self._storages[key]


def _read_torch_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not pickles:
            raise ValueError(f"{path!r} is a zip file without data.pkl: not a torch.save file.")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise ValueError(f"{path!r} was saved on a big-endian machine; re-save it on a little-endian one.")
        with archive.open(pickles[0]) as f:
            try:
                state = _RestrictedUnpickler(f, archive, prefix).load()
            except pickle.UnpicklingError as err:
                raise ValueError(f"{path!r}: {err}") from err
    return _plain(state)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _read_torch_legacy(path):
    """torch.save before PyTorch 1.6: magic, protocol, sys info and the state pickles, the storage
    keys, then each storage as an 8-byte element count and its raw bytes."""
    with open(path, "rb") as f:
        header = [_RestrictedUnpickler(f, None, "").load() for _ in range(3)]
        if header[0] != _LEGACY_MAGIC:
            raise ValueError(f"{path!r} is a pickle but not a torch.save file.")
        unpickler = _RestrictedUnpickler(f, None, "")
        try:
            state = unpickler.load()
            keys = _RestrictedUnpickler(f, None, "").load()
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path!r}: {err}") from err
        for key in keys:
            storage = unpickler._storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(storage.dtype).itemsize
            storage.array = _as_array(f.read(count * itemsize), storage.dtype)
    return _plain(state)


def _plain(value):
    if isinstance(value, _LazyTensor):
        return _rebuild_tensor(value.storage.array, *value.args)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
