"""An embedded synthetic re-ID dataset in the exact Market-1501 layout.

The people, cameras and their exact LIP-label parsing maps are drawn by
`keras_mmga.data.synthetic_people` (re-exported here: `make_identity`,
`make_camera`, `draw_person`, `HEIGHT`, `WIDTH` and the label constants);
this module writes the dataset: the images as JPEGs and the parsing maps as
PNG masks, in mirrored folders, with the settings recorded last.

Identities appear in 2–4 of 6 cameras; training and test identities are
disjoint; as in Market-1501 the query holds one image per test identity and
camera, the gallery the rest plus distractors (pid 0) and junk boxes (pid -1).
Everything is determined by the seed.

Example:
```python
images_root, masks_root = write_dataset("/tmp/synthetic", num_train_ids=100, num_test_ids=100)
Market1501(images_root).num_train_pids
```
"""

import json
import os
import shutil

import cv2
import numpy as np

# Re-exported: these were defined here before the drawing moved out, and
# callers use `keras_mmga.data.synthetic.<name>`.
from keras_mmga.data.synthetic_people import (  # noqa: F401
    FACE,
    HAIR,
    HEIGHT,
    L_ARM,
    L_LEG,
    L_SHOE,
    PANTS,
    R_ARM,
    R_LEG,
    R_SHOE,
    SKIRT,
    UPPER,
    WIDTH,
    _background,
    draw_person,
    make_camera,
    make_identity,
)

# `root/synthetic.json`: the settings of the dataset in `root`, written last
# (so it also marks a finished write).
MARKER = "synthetic.json"

NUM_CAMERAS = 6


def _name(pid, cam, frame, n):
    prefix = "-1" if pid < 0 else f"{pid:04d}"
    return f"{prefix}_c{cam + 1}s1_{frame:06d}_{n:02d}"


def dataset_settings(root):
    """The settings recorded in `root/synthetic.json` (None without a finished write there)."""
    try:
        with open(os.path.join(os.fspath(root), MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _settings(num_train_ids, num_test_ids, seed, images_per_camera, num_distractors, num_junk, jpeg_quality):
    """The writer's arguments, checked, as stored in the marker."""
    ints = dict(
        num_train_ids=num_train_ids,
        num_test_ids=num_test_ids,
        seed=seed,
        num_distractors=num_distractors,
        num_junk=num_junk,
        jpeg_quality=jpeg_quality,
    )
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}.")
    if num_train_ids < 1 or num_test_ids < 1:
        raise ValueError(f"num_train_ids and num_test_ids must be ≥ 1, got {num_train_ids} and {num_test_ids}.")
    if num_distractors < 0 or num_junk < 0:
        raise ValueError(f"num_distractors and num_junk must be ≥ 0, got {num_distractors} and {num_junk}.")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.")
    try:
        lo, hi = (int(v) for v in images_per_camera)
    except (TypeError, ValueError):
        lo = hi = 0
    if not 1 <= lo <= hi:
        raise ValueError(f"images_per_camera must be (min, max) with 1 ≤ min ≤ max, got {images_per_camera!r}.")
    return {k: int(v) for k, v in ints.items()} | {"images_per_camera": [lo, hi]}


def write_dataset(
    root,
    num_train_ids=100,
    num_test_ids=100,
    seed=0,
    images_per_camera=(2, 5),
    num_distractors=20,
    num_junk=10,
    jpeg_quality=92,
    overwrite=False,
):
    """Writes the synthetic dataset: `root/images/` (Market layout) and `root/masks/`.

    The settings are recorded in `root/synthetic.json`, written last. A
    folder that already holds a dataset is never written into as it is: the
    old files would stay and mix with the new ones (other people under the
    same ids). With the same settings the dataset there is returned as it is;
    with other settings, or files of an unfinished or unknown write, it is a
    `ValueError` naming what differs, unless `overwrite=True`, which first
    deletes `root/images/`, `root/masks/` and the marker (nothing else in
    `root`).

    Args:
        root: output folder.
        num_train_ids, num_test_ids: disjoint identity counts.
        seed: everything is determined by it.
        images_per_camera: (min, max) images of an identity in one camera.
        num_distractors: gallery images of pid 0 (people outside the test set).
        num_junk: gallery images of pid -1 (background crops).
        jpeg_quality: JPEG quality of the images.
        overwrite: replace a dataset of other settings already in `root`.

    Returns:
        `(images_root, masks_root)`.
    """
    settings = _settings(num_train_ids, num_test_ids, seed, images_per_camera, num_distractors, num_junk, jpeg_quality)
    root = os.fspath(root)
    images_root, masks_root = os.path.join(root, "images"), os.path.join(root, "masks")
    marker = os.path.join(root, MARKER)
    saved = dataset_settings(root)
    if saved == settings:
        return images_root, masks_root
    held = [d for d in (images_root, masks_root) if _has_files(d)]
    if (held or os.path.exists(marker)) and not overwrite:
        if saved is not None:
            differ = "; ".join(
                f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in settings.items() if saved.get(k) != v
            )
            what = f"a synthetic dataset written with other settings ({differ})"
        else:
            what = (
                f"files ({', '.join(held)}) without a finished write's {MARKER} (an interrupted write, an "
                "older version or other data)"
            )
        raise ValueError(
            f"{root!r} already holds {what}: writing into it would mix the old files with the new ones. "
            "Use another folder, or overwrite=True (--overwrite) to delete its images/ and masks/ first."
        )
    if os.path.exists(marker):
        os.remove(marker)  # first, so that an interrupted rewrite is not taken for a finished one
    for folder in (images_root, masks_root):
        shutil.rmtree(folder, ignore_errors=True)
    _write(root, images_root, masks_root, **settings)
    with open(marker, "w") as f:
        json.dump(settings, f)
    return images_root, masks_root


def _has_files(folder):
    return any(files for _, _, files in os.walk(folder))


def _write(
    root,
    images_root,
    masks_root,
    num_train_ids,
    num_test_ids,
    seed,
    images_per_camera,
    num_distractors,
    num_junk,
    jpeg_quality,
):
    for base in (images_root, masks_root):
        for split in ("bounding_box_train", "bounding_box_test", "query"):
            os.makedirs(os.path.join(base, split), exist_ok=True)
    rng = np.random.RandomState(seed)
    cameras = [make_camera(rng) for _ in range(NUM_CAMERAS)]
    frame = [1000]

    def save(split, pid, cam, n, image, label_map):
        frame[0] += int(rng.randint(1, 50))
        stem = _name(pid, cam, frame[0], n)
        cv2.imwrite(os.path.join(images_root, split, stem + ".jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        cv2.imwrite(os.path.join(masks_root, split, stem + ".png"), label_map)

    def shots(pid):
        person_rng = np.random.RandomState([seed, pid])
        person = make_identity(person_rng)
        cams = person_rng.choice(NUM_CAMERAS, size=person_rng.randint(2, 5), replace=False)
        return person, person_rng, sorted(int(c) for c in cams)

    lo, hi = images_per_camera
    for pid in range(1, num_train_ids + 1):
        person, prng, cams = shots(pid)
        for cam in cams:
            for n in range(prng.randint(lo, hi + 1)):
                save("bounding_box_train", pid, cam, n + 1, *draw_person(prng, person, cameras[cam]))
    for pid in range(num_train_ids + 1, num_train_ids + num_test_ids + 1):
        person, prng, cams = shots(pid)
        for cam in cams:
            count = max(2, prng.randint(lo, hi + 1))  # one query + at least one gallery image
            for n in range(count):
                split = "query" if n == 0 else "bounding_box_test"
                save(split, pid, cam, n + 1, *draw_person(prng, person, cameras[cam]))
    for i in range(num_distractors):
        drng = np.random.RandomState([seed, 10**6 + i])
        person = make_identity(drng)
        cam = int(drng.randint(NUM_CAMERAS))
        save("bounding_box_test", 0, cam, 1, *draw_person(drng, person, cameras[cam]))
    for i in range(num_junk):
        jrng = np.random.RandomState([seed, 2 * 10**6 + i])
        cam = int(jrng.randint(NUM_CAMERAS))
        save("bounding_box_test", -1, cam, 1, _background(jrng, cameras[cam]), np.zeros((HEIGHT, WIDTH), np.uint8))
