"""Step 1 of the BoxMOT check (this package's venv): exports and reference features for benchmarks/check_boxmot.py.

Writes into --out:
- `mmga_boxmot.onnx` (+ card, + BoxMOT sidecar `.onnx.metadata.json`) and
  `mmga_boxmot.tflite`, `mmga_boxmot_fp16.tflite`, `mmga_boxmot_int8.tflite`
  (profile "boxmot": what BoxMOT's ONNX and TFLite backends load unchanged),
  each checked against Keras through its runtime at export (printed);
- `reference.npz`: the real frames given (BGR), their person boxes, and the
  package's own features of those boxes: Keras (`model(crops)`) and the
  package's ONNX Runtime extractor (`keras_mmga.deploy.OnnxFeatureExtractor`
  on the default-profile export), on crops cut as BoxMOT cuts them (box
  rounded, clipped) and resized as the package does;
- `sequence.npz`: a short synthetic sequence (people of
  `keras_mmga.data.synthetic` walking over a background, crossing and
  occluding each other) with its ground-truth boxes and identities.

check_boxmot.py (the PyTorch venv, no TensorFlow) then loads the exports with
BoxMOT's own backends. Command (benchmarks/README.md):

    PYTHONPATH=$PWD python benchmarks/prepare_boxmot_check.py --out /tmp/boxmot_check \
        --frames bus.jpg zidane.jpg [--model runs/x/best.keras]
"""

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Person boxes (x1, y1, x2, y2) of Ultralytics' example photos (the `ultralytics`
# wheel's ultralytics/assets/), drawn by hand on the images and checked by eye.
KNOWN_BOXES = {
    "bus.jpg": [(48, 398, 245, 902), (670, 380, 810, 876), (221, 405, 344, 857), (0, 550, 63, 873)],
    "zidane.jpg": [(747, 41, 1148, 712), (123, 197, 711, 716)],
}


def boxmot_crop(frame, box):
    """The crop BoxMOT's `extract_crops` cuts: box rounded to int, clipped to the frame."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = np.round(np.asarray(box, np.float32)).astype(int)
    return frame[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]


def make_sequence(seed=0, frames=48, size=(480, 640), scale=2.0, scenario="cross"):
    """Synthetic people walking over a background: `(frames BGR uint8, boxes (T, P, 4), visible (T, P))`.

    Four people. `"cross"`: two walk towards each other on one line and cross
    (one passes in front), one walks diagonally, one stands. `"bounce"`: the two
    meet in the middle and turn back the way they came, and neither is detected
    for the 8 frames around the meeting, so a constant-velocity motion model
    predicts each where the other reappears. A person more than half hidden
    behind another is given no detection that frame (`visible` False).
    """
    import cv2

    from keras_mmga.data import synthetic

    rng = np.random.RandomState(seed)
    H, W = size
    t = np.linspace(0, 1, H)[:, None, None]
    background = (np.array([170, 180, 190.0]) * (1 - t) + np.array([90, 100, 95.0]) * t) * np.ones((1, W, 1))
    background = background.astype(np.uint8)
    for _ in range(12):  # clutter
        x, y = rng.randint(0, W), rng.randint(0, H)
        cv2.rectangle(
            background,
            (x, y),
            (x + rng.randint(10, 60), y + rng.randint(10, 80)),
            tuple(int(c) for c in rng.randint(0, 255, 3)),
            -1,
        )
    camera = synthetic.make_camera(rng)
    camera.update(noise=0.0, blur=1, gain=1.0, tint=np.ones(3))
    people = []
    for _ in range(4):
        while True:
            bgr, lab = synthetic.draw_person(rng, synthetic.make_identity(rng), camera)
            if lab.any():
                break
        ys, xs = np.nonzero(lab)
        bgr, lab = (
            bgr[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
            lab[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
        )
        size_ = (int(bgr.shape[1] * scale), int(bgr.shape[0] * scale))
        people.append(
            (
                cv2.resize(bgr, size_, interpolation=cv2.INTER_NEAREST),
                cv2.resize(lab, size_, interpolation=cv2.INTER_NEAREST) > 0,
            )
        )
    # (start x, start y, end x, end y) of each person's top-left corner; draw order = depth (later = in front).
    paths = [(40, 150, 520, 150), (520, 160, 40, 160), (60, 20, 420, 200), (300, 40, 300, 40)]
    order = [3, 0, 2, 1]  # person 1 passes in front of person 0
    frames_out, boxes, visible = [], np.zeros((frames, 4, 4), np.float32), np.zeros((frames, 4), bool)
    for f in range(frames):
        a = f / (frames - 1)
        bounce = 1.0 - abs(2.0 * a - 1.0)  # 0 -> 1 (meeting) -> 0
        img = background.copy()
        cover = np.full((H, W), -1, int)
        for p in order:
            x0, y0, x1, y1 = paths[p]
            t = bounce if scenario == "bounce" and p < 2 else a
            if scenario == "bounce" and p < 2:
                x1 = 300 - 10 * (p == 0) + 10 * (p == 1)  # meet in the middle
            x, y = int(round(x0 + t * (x1 - x0))), int(round(y0 + t * (y1 - y0)))
            bgr, mask = people[p]
            h, w = mask.shape
            region = img[y : y + h, x : x + w]
            m = mask[: region.shape[0], : region.shape[1]]
            region[m] = bgr[: region.shape[0], : region.shape[1]][m]
            cover[y : y + h, x : x + w][m] = p
            boxes[f, p] = (x, y, x + w, y + h)
        for p in range(4):
            x1_, y1_, x2_, y2_ = boxes[f, p].astype(int)
            mask = people[p][1]
            seen = np.sum(cover[y1_:y2_, x1_:x2_][mask[: y2_ - y1_, : x2_ - x1_]] == p)
            visible[f, p] = seen > 0.5 * mask.sum()
            if scenario == "bounce" and p < 2 and abs(f - (frames - 1) / 2) < 4:
                visible[f, p] = False  # no detection of either around the meeting
        frames_out.append(img)
    return np.stack(frames_out), boxes, visible


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", nargs="+", required=True, help="bus.jpg / zidane.jpg (boxes in KNOWN_BOXES)")
    p.add_argument("--model", help=".keras to export (default: a seeded, untrained --variant at --size)")
    p.add_argument("--variant", default="baseline", help="variant of the untrained default model")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(128, 64),
        metavar=("H", "W"),
        help="input size of the untrained default model",
    )
    p.add_argument("--save-model", help="also save the (default) model to this .keras path")
    a = p.parse_args(argv)

    import cv2
    import keras

    from keras_mmga import MMGA
    from keras_mmga.deploy import OnnxFeatureExtractor
    from keras_mmga.export import export_onnx, export_tflite
    from keras_mmga.models.loading import load_model
    from keras_mmga.preprocessing import preprocess_batch

    os.makedirs(a.out, exist_ok=True)
    if a.model:
        model = load_model(a.model)
    else:
        keras.utils.set_random_seed(0)
        model = MMGA(10, variant=a.variant, input_shape=(*a.size, 3), backbone_weights=None)
        if a.save_model:
            model.save(a.save_model)
    h, w = model.image_size
    out = lambda name: os.path.join(a.out, name)  # noqa: E731
    for name, profile in (("mmga_boxmot.onnx", "boxmot"), ("mmga_default.onnx", "default")):
        info = export_onnx(model, out(name), profile=profile)
        print(f"{name}: max |ORT - Keras| {info['max_abs_diff']:.2e}")
    frames, all_boxes, frame_of, crops = [], [], [], []
    for i, path in enumerate(a.frames):
        frame = cv2.imread(path)
        boxes = KNOWN_BOXES[os.path.basename(path)]
        frames.append(frame)
        for box in boxes:
            all_boxes.append(box)
            frame_of.append(i)
            crops.append(boxmot_crop(frame, box))
    calibration = [cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in crops]
    info = export_tflite(model, out("mmga_boxmot.tflite"), profile="boxmot")
    print(f"mmga_boxmot.tflite: max |LiteRT - Keras| {info['max_abs_diff']:.2e}")
    info = export_tflite(model, out("mmga_boxmot_fp16.tflite"), profile="boxmot", precision="float16")
    print(f"mmga_boxmot_fp16.tflite: max |LiteRT - Keras| {info['max_abs_diff']:.2e}")
    seq, seq_boxes, seq_visible = make_sequence()
    # int8: calibrated on the real crops and the sequence's people (the user's images).
    calibration += [
        cv2.cvtColor(boxmot_crop(seq[f], seq_boxes[f, q]), cv2.COLOR_BGR2RGB)
        for f in range(0, len(seq), 6)
        for q in range(4)
    ]
    info = export_tflite(
        model,
        out("mmga_boxmot_int8.tflite"),
        profile="boxmot",
        precision="int8",
        calibration=calibration,
        min_cosine=0.9,
    )
    print(f"mmga_boxmot_int8.tflite: cosine vs Keras {info['cosine']}")
    batch = preprocess_batch(crops, (h, w), color="bgr")
    keras_features = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)), np.float32)
    extractor_features = OnnxFeatureExtractor(out("mmga_default.onnx"))(crops, color="bgr")
    np.savez_compressed(
        out("reference.npz"),
        **{f"frame_{i}": f for i, f in enumerate(frames)},
        boxes=np.float32(all_boxes),
        frame_of=np.int32(frame_of),
        keras=keras_features,
        extractor=extractor_features,
        names=np.array([os.path.basename(x) for x in a.frames]),
    )
    np.savez_compressed(out("sequence.npz"), frames=seq, boxes=seq_boxes, visible=seq_visible)
    bounce = make_sequence(scenario="bounce")
    np.savez_compressed(out("sequence_bounce.npz"), frames=bounce[0], boxes=bounce[1], visible=bounce[2])
    cv2.imwrite(out("sequence_frame24.png"), seq[len(seq) // 2])
    print(
        f"wrote {a.out}: {len(crops)} person boxes in {len(frames)} frames, a {len(seq)}-frame sequence "
        f"({int((~seq_visible).sum())} hidden detections)"
    )


if __name__ == "__main__":
    main()
