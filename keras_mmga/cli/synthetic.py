"""`keras-mmga synthetic`: writes the embedded synthetic re-ID dataset (Market-1501 layout + LIP masks).

  keras-mmga synthetic --output DIR --train-ids 100 --test-ids 100 --seed 0

Creates DIR/images (bounding_box_train/, bounding_box_test/, query/),
DIR/masks (the same tree of LIP-label PNGs) and DIR/synthetic.json (the
settings). A DIR already holding a dataset of other settings is an error
(the old files would mix with the new); --overwrite replaces it.
"""

from keras_mmga.cli.shared import add_required, required_from


def add_arguments(p):
    p.description = __doc__
    add_required(p, "--output", "DIR", "output folder (images/ and masks/ are created in it)")
    p.add_argument("--train-ids", type=int, default=100, help="training identities")
    p.add_argument("--test-ids", type=int, default=100, help="test (query/gallery) identities")
    p.add_argument("--seed", type=int, default=0, help="decides every image")
    p.add_argument("--distractors", type=int, default=20, help="gallery images of pid 0")
    p.add_argument("--junk", type=int, default=10, help="gallery images of pid -1")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR/images and DIR/masks when they hold a dataset of other settings",
    )
    return p


def run(args):
    required_from(args, "--output", "DIR", "synthetic", "folder")
    from keras_mmga.data import synthetic
    from keras_mmga.run_lock import check_output_folder

    check_output_folder(args.output, "--output")
    images, masks = synthetic.write_dataset(
        args.output,
        args.train_ids,
        args.test_ids,
        seed=args.seed,
        num_distractors=args.distractors,
        num_junk=args.junk,
        overwrite=args.overwrite,
    )
    print(f"images: {images}\nmasks:  {masks}")
    return 0
