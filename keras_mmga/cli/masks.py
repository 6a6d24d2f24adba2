"""`keras-mmga masks IMAGES --output MASKS`: body-part masks (LIP label PNGs) for a folder of person images.

Example:
    keras-mmga masks Market-1501 --output Market-1501-masks --preview 16
"""

from keras_mmga.cli.shared import check_positive


def add_arguments(parser):
    parser.add_argument("images", help="folder of person images (Market-1501 / DukeMTMC-reID layout or any tree)")
    parser.add_argument("--output", required=True, help="mask folder: the same tree, one LIP-label PNG per image")
    parser.add_argument(
        "--pose-model",
        default=None,
        metavar="PATH",
        help="pose_landmark_full.tflite (or the mediapipe 0.10.21 wheel) you bring; "
        "default: fetched once into the cache",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="model cache folder (default: $KERAS_MMGA_CACHE or ~/.cache/keras_mmga)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes, each with cores/N interpreter threads (default: one per 4 cores)",
    )
    parser.add_argument("--overwrite", action="store_true", help="remake masks that exist (default: keep, resume)")
    parser.add_argument(
        "--preview",
        type=int,
        default=0,
        metavar="N",
        help="write a contact sheet of N images (image, whole mask, parts) into the output folder",
    )
    parser.add_argument(
        "--low-confidence",
        type=float,
        default=0.5,
        help="masks below this confidence are counted and listed in the report",
    )


def run(args):
    import sys

    from keras_mmga.masks.pose_model import PoseModelError
    from keras_mmga.masks.writer import write_masks

    if args.workers is not None:
        check_positive(args, "workers")
    if args.preview < 0:
        raise ValueError(f"--preview must be >= 0, got {args.preview}")
    try:
        # Folder checks (a file given, a folder without images, an output that is a file or in use)
        # come before the pose model is fetched.
        summary = write_masks(
            args.images,
            args.output,
            pose_model=args.pose_model,
            workers=args.workers,
            overwrite=args.overwrite,
            preview=args.preview,
            cache_dir=args.cache_dir,
            low_confidence=args.low_confidence,
            verbose=not args.quiet,
        )
    except PoseModelError as err:
        # The ways to get the model are part of the message: keep its lines (the first is the error).
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if summary["errors"] == 0 else 1
