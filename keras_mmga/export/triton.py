"""Triton Inference Server model repository: `DIR/<name>/config.pbtxt` and `DIR/<name>/1/model.onnx`.

The ONNX export (`export_onnx`, any profile) goes in version folder `1`, and
`config.pbtxt` describes it for Triton's ONNX Runtime backend: platform
`onnxruntime_onnx`, `max_batch_size` (Triton adds the batch axis itself, so
the input and output `dims` are the graph's without it) and dynamic batching
with a queue delay, which lets the server merge single-crop requests into
batches. The dims are read back from the written graph, so the config cannot
disagree with the file (tests/test_export_clients.py parses it with Triton's
own `model_config_pb2`).

Serve with `tritonserver --model-repository DIR` (see docs/DEPLOYMENT.md).

Example:
```python
from keras_mmga.export.triton import export_triton_repository
info = export_triton_repository("runs/market_mmga/best.keras", "triton_models", name="mmga_market")
open(info["config_path"]).read()
```
"""

import os
import re

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_QUEUE_DELAY_US = 500

# ONNX TensorProto element types -> Triton data types.
_TRITON_TYPES = {
    1: "TYPE_FP32",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
}


def _tensors(values):
    out = []
    for value in values:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out.append((value.name, _TRITON_TYPES[t.elem_type], dims))
    return out


def triton_config(proto, name, max_batch_size=DEFAULT_MAX_BATCH_SIZE, queue_delay_us=DEFAULT_QUEUE_DELAY_US):
    """The `config.pbtxt` text of ONNX model `proto` served as `name`.

    The graph's first axis must be the dynamic batch (every keras-mmga export's
    is); Triton's dims leave it out.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise ValueError(f"Triton model name must be letters, digits, '_', '.', '-', got {name!r}.")
    if int(max_batch_size) < 1:
        raise ValueError(f"max_batch_size must be positive, got {max_batch_size}.")
    if int(queue_delay_us) < 0:
        raise ValueError(f"queue_delay_us must be >= 0, got {queue_delay_us}.")
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {int(max_batch_size)}"]
    for kind, values in (("input", proto.graph.input), ("output", proto.graph.output)):
        entries = []
        for tensor, dtype, dims in _tensors(values):
            if not dims or dims[0] != -1 or any(d < 1 for d in dims[1:]):
                raise ValueError(f"{kind} {tensor!r} has dims {dims}: expected a dynamic batch axis and fixed others.")
            entries.append(
                f'  {{\n    name: "{tensor}"\n    data_type: {dtype}\n'
                f"    dims: [ {', '.join(str(d) for d in dims[1:])} ]\n  }}"
            )
        lines.append(f"{kind} [\n" + ",\n".join(entries) + "\n]")
    preferred = sorted({b for b in (4, 8, 16, 32, int(max_batch_size)) if b <= int(max_batch_size)})
    lines.append(
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        f"  max_queue_delay_microseconds: {int(queue_delay_us)}\n" + "}"
    )
    lines.append("instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]")
    return "\n".join(lines) + "\n"


def export_triton_repository(
    model_or_path,
    repository,
    name=None,
    profile="default",
    nchw=False,
    fp16=False,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    queue_delay_us=DEFAULT_QUEUE_DELAY_US,
    parity_images=None,
    opset=None,
):
    """Exports to ONNX inside a Triton model repository and writes its `config.pbtxt`.

    Args:
        model_or_path: an `MMGA` or a `.keras` path.
        repository: the repository folder (created); the model goes in `repository/name/`.
        name: the Triton model name (default: the `.keras` file's stem, else `"mmga"`).
        profile, nchw, fp16, parity_images, opset: as `export_onnx` (checked the same way).
        max_batch_size: the largest batch Triton forms.
        queue_delay_us: how long dynamic batching waits to fill a batch.

    Returns:
        Dict with `config_path`, `onnx_path`, `card_path`, `name`, the `export_onnx` result (`export`).

    Example:
    ```python
    export_triton_repository(model, "triton_models", name="mmga", profile="field")
    ```
    """
    import onnx

    from keras_mmga.export.conversion import DEFAULT_OPSET
    from keras_mmga.export.onnx_export import export_onnx

    if name is None:
        name = (
            os.path.splitext(os.path.basename(os.fspath(model_or_path)))[0]
            if isinstance(model_or_path, (str, os.PathLike))
            else "mmga"
        )
    triton_config(onnx.ModelProto(), name, max_batch_size, queue_delay_us)  # bad arguments: before converting
    folder = os.path.join(os.fspath(repository), name)
    onnx_path = os.path.join(folder, "1", "model.onnx")
    info = export_onnx(
        model_or_path,
        onnx_path,
        opset=opset or DEFAULT_OPSET,
        nchw=nchw,
        fp16=fp16,
        parity_images=parity_images,
        profile=profile,
    )
    config_path = os.path.join(folder, "config.pbtxt")
    with open(config_path, "w") as f:
        f.write(triton_config(onnx.load(onnx_path), name, max_batch_size, queue_delay_us))
    return {
        "config_path": config_path,
        "onnx_path": onnx_path,
        "card_path": info["card_path"],
        "name": name,
        "export": info,
    }
