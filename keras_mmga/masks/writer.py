"""A folder of person images → the mirrored folder of LIP mask PNGs that training reads.

`IMAGES/bounding_box_train/x.jpg` → `MASKS/bounding_box_train/x.png` (the rule
of `keras_mmga.data.masks.mask_path_for`), for the Market-1501 /
DukeMTMC-reID layouts and any folder tree of images. The cores are shared
out as worker processes and interpreter threads (`default_workers`); a progress line shows images/s and
time left. The run is resumable: masks already there are kept unless
`overwrite`, and each mask is written to a temporary name first, so an
interrupted run leaves no half-written file. An image where no person is found
gets **no** mask file (training then errors, or skips it with
`missing_masks="ignore"`); an unreadable image is listed and the run goes on.
Both, and masks written with low confidence, are listed in the report file
`REPORT_NAME` in the output folder, as are the masks with parts out of view
(reason `parts_absent`, the part names in the detail).

A mask whose parser found parts out of view (`ParseResult.absent`: e.g. no
thighs, shins or feet in a waist-up crop) gets a sidecar `x.json` beside
`x.png` (`absence_sidecar_path`): `{"absent": [LIP ids], "labels": [the LIP
ids the parser writes]}`. `keras_mmga.data.masks.load_targets` gives a part
channel weight 0 for that image when every label of the part that the parser
writes is absent (docs/MASKS.md). A mask with every part in view has no
sidecar (a stale one is removed when the mask is remade).

Example:
```python
summary = write_masks("Market-1501", "Market-1501-masks", preview=16)  # doctest: +SKIP
summary["written"], summary["no_person"]  # doctest: +SKIP
```
"""

import json
import multiprocessing
import os
import sys
import time

import numpy as np

from keras_mmga import image_io

# One list of image suffixes for the whole package (search, export and training read the same).
IMAGE_EXTENSIONS = image_io.IMAGE_SUFFIXES
REPORT_NAME = "make_masks_report.tsv"
PREVIEW_NAME = "make_masks_preview.png"
LOW_CONFIDENCE = 0.5

# Colours (BGR) of the LIP ids the parser writes, for previews.
PALETTE = {
    2: (0, 0, 160),
    13: (90, 170, 255),
    5: (40, 40, 220),
    14: (0, 200, 120),
    15: (200, 200, 0),
    9: (200, 90, 20),
    16: (160, 0, 160),
    17: (230, 110, 230),
    18: (0, 120, 255),
    19: (60, 220, 255),
}


def _cv2():
    import cv2

    cv2.setNumThreads(1)  # one worker per core already
    return cv2


def list_images(images_root, exclude=None):
    """Relative paths of the image files under `images_root`, sorted (files under `exclude` skipped)."""
    images_root = os.path.abspath(os.fspath(images_root))
    exclude = os.path.abspath(os.fspath(exclude)) if exclude else None
    found = []
    for folder, dirs, files in os.walk(images_root):
        if exclude and (folder == exclude or folder.startswith(exclude + os.sep)):
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(folder, name), images_root))
    return found


def mask_relpath(image_relpath):
    """The mask of an image: the same relative path with suffix `.png`."""
    return os.path.splitext(image_relpath)[0] + ".png"


def absence_sidecar_path(mask_path):
    """The absence sidecar of a mask file: same path, suffix `.json`."""
    return os.path.splitext(os.fspath(mask_path))[0] + ".json"


def write_absence_sidecar(mask_path, absent, labels):
    """Writes (atomically) or removes the sidecar of `mask_path`: `absent` LIP ids out of `labels` written."""
    sidecar = absence_sidecar_path(mask_path)
    if not absent:
        if os.path.exists(sidecar):
            os.remove(sidecar)
        return None
    tmp = sidecar + f".{os.getpid()}.part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"absent": sorted(int(a) for a in absent), "labels": sorted(int(v) for v in labels)}, f)
    os.replace(tmp, sidecar)
    return sidecar


def read_image(path):
    """A BGR uint8 image, or None when the file is missing or cannot be decoded (the report lists it)."""
    try:
        return image_io.read_image(path)
    except (FileNotFoundError, ValueError):
        return None


# Worker state: one parser per process.
_PARSER = None
_SETTINGS = None


def _init_worker(model_path, num_threads, parser_kwargs, images_root, masks_root, ignore_interrupt=False):
    global _PARSER, _SETTINGS
    if ignore_interrupt:
        # Ctrl-C reaches the whole process group: the parent stops the pool and writes the report;
        # a worker must not print its own traceback.
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    from keras_mmga.masks.parser import BodyPartParser

    _PARSER = BodyPartParser(model_path, num_threads=num_threads, **parser_kwargs)
    _SETTINGS = (images_root, masks_root)


def _process(rel):
    """(rel, status, confidence, detail, absent) of one image; status: written / no_person / unreadable / error."""
    images_root, masks_root = _SETTINGS
    image = read_image(os.path.join(images_root, rel))
    if image is None:
        return rel, "unreadable", None, "cannot be decoded as an image", ()
    try:
        result = _PARSER.parse(image)
    except Exception as err:  # one bad image must not stop a dataset run
        return rel, "error", None, f"{type(err).__name__}: {err}", ()
    if not result.person:
        return rel, "no_person", result.confidence, f"pose presence {result.presence:.3f}", ()
    target = os.path.join(masks_root, mask_relpath(rel))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    ok, png = _cv2().imencode(".png", result.label_map)
    if not ok:
        return rel, "error", result.confidence, "PNG encoding failed", ()
    tmp = target + f".{os.getpid()}.part"
    with open(tmp, "wb") as f:
        f.write(png.tobytes())
    os.replace(tmp, target)
    from keras_mmga.masks.parser import PART_LABELS

    write_absence_sidecar(target, result.absent, PART_LABELS)
    return rel, "written", result.confidence, "", tuple(result.absent)


def usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_workers():
    """One process per 4 cores (at least one); the cores are shared out as interpreter threads.

    On 2 cores one process with a 2-thread interpreter wrote masks 1.7x as fast
    as two single-thread processes (benchmarks/README.md): the interpreter's
    own threads use the cores better than more processes do.
    """
    return max(1, usable_cores() // 4)


def write_masks(
    images_root,
    output_root,
    pose_model=None,
    workers=None,
    overwrite=False,
    preview=0,
    cache_dir=None,
    low_confidence=LOW_CONFIDENCE,
    verbose=True,
    parser_kwargs=None,
    stream=None,
    images_list=None,
):
    """Writes one LIP mask PNG per image with a person; returns the run's summary.

    Args:
        images_root: folder of images (any tree; Market/Duke layouts included).
        output_root: mask folder; the same tree with `.png` files.
        pose_model: the user's model file or mediapipe 0.10.21 wheel; None: the cache
            (fetched with pip on first use).
        workers: processes (default `default_workers()`: one per 4 usable cores); each
            runs an interpreter with cores / workers threads. With 1 the work runs
            in this process.
        overwrite: remake masks that exist (default: keep them, so a stopped run resumes).
        preview: write a contact sheet of this many images (image, whole mask,
            parts in colour) to `output_root/PREVIEW_NAME`; 0: none.
        cache_dir: see `keras_mmga.masks.pose_model.default_cache_dir`.
        low_confidence: masks below this confidence are counted and listed in the report.
        verbose: progress line and summary on `stream` (default stderr).
        parser_kwargs: extra `BodyPartParser` arguments.
        images_list: only these image paths (relative to `images_root`); default: every image there.

    Returns:
        dict: images, skipped_existing, written, no_person, unreadable, errors,
        low_confidence, parts_absent (masks with a part out of view), seconds, images_per_second, report,
        preview, startup_seconds (to the first result: processes started, model loaded),
        steady_images_per_second (after it).
    """
    from keras_mmga.masks.pose_model import resolve_pose_model
    from keras_mmga.run_lock import RunLock

    stream = sys.stderr if stream is None else stream
    given = images_root
    images_root = os.path.abspath(os.fspath(images_root))
    output_root = os.path.abspath(os.fspath(output_root))
    if os.path.isfile(images_root):
        raise NotADirectoryError(
            f"{os.fspath(given)!r} is a file, not a folder: give the folder of images (it is searched recursively)."
        )
    if not os.path.isdir(images_root):
        raise FileNotFoundError(f"Image folder not found: {images_root!r}.")
    if os.path.isfile(output_root):
        raise FileExistsError(f"The mask folder {output_root!r} is an existing file: give a folder.")
    if output_root == images_root:
        raise ValueError(f"The mask folder must differ from the image folder ({images_root!r}).")
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    # The images before the model: a folder without images is an error, not a fetch.
    images = (
        list_images(images_root, exclude=output_root)
        if images_list is None
        else [os.path.normpath(os.fspath(r)) for r in images_list]
    )
    if not images:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {images_root!r}.")
    with RunLock(output_root, "masks"):
        # Resolve (and fetch) the model once, before any worker starts: a
        # missing model is one clear error, not one per process.
        model_path = resolve_pose_model(pose_model, cache_dir, log=lambda m: stream.write(m + "\n"))
        return _write_all(
            images,
            images_root,
            output_root,
            model_path,
            workers,
            overwrite,
            preview,
            low_confidence,
            verbose,
            dict(parser_kwargs or {}),
            stream,
        )


def _write_all(
    images,
    images_root,
    output_root,
    model_path,
    workers,
    overwrite,
    preview,
    low_confidence,
    verbose,
    parser_kwargs,
    stream,
):
    from keras_mmga.progress import Progress

    todo = (
        images if overwrite else [r for r in images if not os.path.isfile(os.path.join(output_root, mask_relpath(r)))]
    )
    counts = {"written": 0, "no_person": 0, "unreadable": 0, "error": 0}
    listed, done, low, first, with_absent = [], [], 0, None, 0
    start = time.monotonic()
    report = os.path.join(output_root, REPORT_NAME)
    # Earlier runs' notes on the masks this run keeps (a resumed run).
    kept = [] if overwrite else _kept_rows(report, set(todo), set(images))
    results = _run(todo, workers, model_path, parser_kwargs, images_root, output_root)
    try:
        with Progress(len(todo), "images", label="masks", verbose=verbose, stream=stream) as bar:
            for rel, status, confidence, detail, absent in results:
                if first is None:
                    first = time.monotonic() - start
                counts[status] += 1
                done.append(rel)
                if status != "written":
                    listed.append((rel, status, confidence, detail))
                elif confidence is not None and confidence < low_confidence:
                    low += 1
                    listed.append((rel, "low_confidence", confidence, "mask written"))
                if status == "written" and absent:
                    with_absent += 1
                    listed.append((rel, "parts_absent", confidence, ",".join(_part_names(absent))))
                bar.update(1)
    except KeyboardInterrupt:
        # What was done is kept and reported: the masks written, and every row of them in the report.
        # Masks that workers wrote but whose results had not come back yet have no report row: they go
        # (and are redone on resume), so the report stays complete for every mask kept.
        results.close()  # stops the worker pool before its files are looked at
        reported = set(done)
        for rel in todo:
            path = os.path.join(output_root, mask_relpath(rel))
            if rel not in reported and os.path.isfile(path):
                os.remove(path)
        _write_report(report, listed + kept, images_root)
        raise KeyboardInterrupt(
            f"{counts['written']} masks written this run are kept, {report} lists the images done so far; "
            "run the same command again to make the rest"
        ) from None
    seconds = time.monotonic() - start
    _write_report(report, listed + kept, images_root)
    summary = {
        "images": len(images),
        "skipped_existing": len(images) - len(todo),
        "written": counts["written"],
        "no_person": counts["no_person"],
        "unreadable": counts["unreadable"],
        "errors": counts["error"],
        "low_confidence": low,
        "parts_absent": with_absent,
        "seconds": seconds,
        "images_per_second": len(todo) / seconds if seconds > 0 else 0.0,
        "report": report,
        "preview": None,
        # Start-up (worker processes, model loading) ends with the first result.
        "startup_seconds": first,
        "steady_images_per_second": (len(todo) - 1) / (seconds - first)
        if first is not None and seconds > first
        else 0.0,
    }
    if preview:
        summary["preview"] = write_preview(
            images_root, output_root, images, int(preview), os.path.join(output_root, PREVIEW_NAME)
        )
    if verbose:
        stream.write(format_summary(summary) + "\n")
        stream.flush()
    return summary


def _kept_rows(report, redone, known):
    """The low-confidence and parts-absent rows of an earlier report for masks that this run keeps."""
    if not os.path.isfile(report):
        return []
    return [
        (row["image"], row["reason"], float(row["confidence"]), row.get("detail", ""))
        for row in read_report(report)
        if row.get("reason") in ("low_confidence", "parts_absent")
        and row["image"] not in redone
        and row["image"] in known
    ]


def _run(todo, workers, model_path, parser_kwargs, images_root, output_root):
    settings = (model_path, max(1, usable_cores() // workers), parser_kwargs, images_root, output_root)
    if workers == 1 or len(todo) < 2:
        _init_worker(*settings)
        yield from map(_process, todo)
        return
    # fork starts workers at once (nothing to import again); a parent with
    # TensorFlow loaded (its thread pools must not be forked) spawns them.
    heavy = any(m in sys.modules for m in ("tensorflow", "jax", "torch"))
    context = multiprocessing.get_context("fork" if sys.platform == "linux" and not heavy else "spawn")
    with context.Pool(min(workers, len(todo)), initializer=_init_worker, initargs=settings + (True,)) as pool:
        yield from pool.imap_unordered(_process, todo, chunksize=8)


def _write_report(path, listed, images_root):
    order = {"unreadable": 0, "error": 1, "no_person": 2, "low_confidence": 3, "parts_absent": 4}
    tmp = path + f".{os.getpid()}.part"  # a second Ctrl-C cannot leave half a report
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# images without a mask (unreadable, error, no_person), masks with low confidence, and masks\n")
        f.write("# with parts out of view (parts_absent: the absent parts in detail; sidecar <mask>.json)\n")
        f.write(f"# image paths are relative to {images_root}\n")
        f.write("image\treason\tconfidence\tdetail\n")
        for rel, status, confidence, detail in sorted(listed, key=lambda r: (order[r[1]], r[0])):
            conf = "" if confidence is None else f"{confidence:.3f}"
            f.write(f"{rel}\t{status}\t{conf}\t{detail}\n")
    os.replace(tmp, path)


def read_report(path):
    """The report's rows as dicts (image, reason, confidence, detail)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
    header = lines[0].split("\t")
    for line in lines[1:]:
        rows.append(dict(zip(header, line.split("\t"))))
    return rows


def format_summary(summary):
    lines = [
        f"images: {summary['images']} (kept existing masks: {summary['skipped_existing']})",
        f"masks written: {summary['written']} ({summary['images_per_second']:.1f} images/s)",
        f"no person found (no mask): {summary['no_person']}",
        f"unreadable images: {summary['unreadable']}" + (f", errors: {summary['errors']}" if summary["errors"] else ""),
        f"low confidence (mask written): {summary['low_confidence']}",
        f"masks with parts out of view (weight 0 for those parts): {summary.get('parts_absent', 0)}",
        f"report: {summary['report']}",
    ]
    if summary.get("preview"):
        lines.append(f"preview: {summary['preview']}")
    return "\n".join(lines)


def _part_names(absent):
    from keras_mmga.masks.parser import PART_NAMES

    return [PART_NAMES.get(int(a), str(int(a))) for a in absent]


def colourise(label_map):
    """A BGR picture of a LIP label map (the parser's ids in `PALETTE`, others grey)."""
    out = np.zeros(label_map.shape + (3,), np.uint8)
    out[label_map > 0] = (128, 128, 128)
    for label, colour in PALETTE.items():
        out[label_map == label] = colour
    return out


def write_preview(images_root, output_root, images, count, path, columns=8):
    """A contact sheet of `count` images with masks: image | whole mask | parts over the image."""
    cv2 = _cv2()
    with_masks = [r for r in images if os.path.isfile(os.path.join(output_root, mask_relpath(r)))]
    if not with_masks:
        return None
    picks = [with_masks[i] for i in np.linspace(0, len(with_masks) - 1, min(count, len(with_masks))).astype(int)]
    tiles = []
    for rel in picks:
        image = read_image(os.path.join(images_root, rel))
        labels = cv2.imread(os.path.join(output_root, mask_relpath(rel)), cv2.IMREAD_UNCHANGED)
        if image is None or labels is None:
            continue
        image = cv2.resize(image, (64, 128), interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, (64, 128), interpolation=cv2.INTER_NEAREST)
        whole = np.repeat(((labels > 0) * 255).astype(np.uint8)[..., None], 3, axis=-1)
        parts = np.where(labels[..., None] > 0, (0.35 * image + 0.65 * colourise(labels)).astype(np.uint8), image // 3)
        tiles.append(np.concatenate([image, whole, parts], axis=1))
    if not tiles:
        return None
    gap = np.full((128, 4, 3), 255, np.uint8)
    rows = []
    for i in range(0, len(tiles), columns):
        row = tiles[i : i + columns]
        row += [np.full_like(tiles[0], 255)] * (columns - len(row)) if len(tiles) > columns else []
        rows.append(np.concatenate([t for tile in row for t in (tile, gap)][:-1], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    cv2.imwrite(path, np.concatenate(rows[:-1], axis=0))
    return path
