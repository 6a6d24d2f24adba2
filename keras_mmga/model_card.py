"""The model card: the JSON file `NAME.json` that the export writes beside `NAME.onnx`.

It says what the graph takes and gives (input layout and shape, feature size,
preprocessing, precision, parity figures, versions); `OnnxFeatureExtractor`
reads the input layout from it. This module is shared by the export (which
writes cards) and the deployment (which reads them), so it imports neither
TensorFlow nor Keras nor ONNX: the standard library only.

Example:
```python
from keras_mmga.model_card import card_path_for, read_model_card
read_model_card(card_path_for("exported/mmga_market.onnx"))["input"]["layout"]
```
"""

import json
import os

# The "format" of every card this package writes; a JSON file under a card's
# name without it is not ours to trust.
CARD_FORMAT = "keras-mmga onnx export"


def card_path_for(onnx_path):
    """The model card written beside `onnx_path`: `NAME.onnx` → `NAME.json`."""
    return os.path.splitext(os.fspath(onnx_path))[0] + ".json"


def write_model_card(card_path, card):
    """Writes `card` (a dict with `"format": CARD_FORMAT`) as indented JSON at `card_path`."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ValueError(f'card must be a dict with "format": {CARD_FORMAT!r}, got {found!r}.')
    with open(card_path, "w") as f:
        json.dump(card, f, indent=2)


def read_json(path, what):
    """The JSON at `path`, or a `ValueError` that names the file and what it should be."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is not valid JSON (expected {what}): {err}.") from None


def read_model_card(card_path):
    """The model card at `card_path`, checked to be one `keras_mmga.export` wrote.

    The extractor takes the input layout from the card, so a foreign JSON file
    under the card's name (another tool's, or a gallery index saved with the
    model's prefix by an older version) must be refused, not half-read.

    Raises:
        ValueError: naming the file, if it is not JSON, not a keras-mmga card,
            or has no usable `input.layout` / `input.shape`.
    """
    card = read_json(card_path, "a keras-mmga model card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        hint = (
            " (it looks like a gallery index saved under the model's name)"
            if isinstance(card, dict) and ("paths" in card)
            else ""
        )
        raise ValueError(
            f'{card_path!r} is not a keras-mmga model card (expected "format": {CARD_FORMAT!r}, got {found!r})'
            f"{hint}; re-export the model, or remove the file to use the graph's input shape."
        )
    spec = card.get("input")
    if (
        not isinstance(spec, dict)
        or spec.get("layout") not in ("NHWC", "NCHW")
        or not (isinstance(spec.get("shape"), list) and len(spec["shape"]) == 4)
    ):
        raise ValueError(
            f'{card_path!r}: expected "input" with "layout" \'NHWC\' or \'NCHW\' and a 4-D "shape"; got {spec!r}.'
        )
    return card
