"""`keras-mmga evaluate`: rank-1/5/10, mAP and mINP of a saved MMGA model (Market-1501 protocol).

  keras-mmga evaluate --model runs/mmga/best.keras --data Market-1501 --json m.json --pictures pics/

With --quiet only one JSON line of the metrics is printed.
"""

import json

from keras_mmga.cli.shared import add_model, check_positive, model_from
from keras_mmga.settings import DATASETS


def add_arguments(p):
    p.description = __doc__
    add_model(p, "a .keras file written by `keras-mmga train`")
    p.add_argument("--data", required=True, help="dataset root (query/, bounding_box_test/)")
    p.add_argument("--dataset", default="market1501", choices=DATASETS, help="file-name layout of --data")
    p.add_argument("--batch-size", type=int, default=64, help="images per inference batch")
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image's feature")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    p.add_argument("--pictures", help="folder for ranking grids and attention overlays")
    p.add_argument("--num-pictures", type=int, default=12, help="queries drawn with --pictures")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    return p


def run(a):
    model = model_from(a, "evaluate")
    check_positive(a, "batch_size", "num_pictures")
    from keras_mmga.run_lock import check_output_file, check_output_folder

    # Outputs before the features are computed.
    if a.json:
        check_output_file(a.json, "--json")
    if a.pictures:
        check_output_folder(a.pictures, "--pictures")
    from keras_mmga.evaluation.model_metrics import dataset_metrics, format_results

    result = dataset_metrics(
        model,
        a.data,
        a.dataset,
        a.batch_size,
        flip=not a.no_flip,
        rerank=a.rerank,
        pictures_dir=a.pictures,
        json_path=a.json,
        max_queries_pictures=a.num_pictures,
        verbose=not a.quiet,
    )
    if a.quiet:
        print(json.dumps({k: result[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}))
        return 0
    name = model + (" + re-ranking" if a.rerank else "")
    print(format_results({name: result}))
    print(f"{result['num_valid_queries']} queries" + (f"; metrics in {a.json}" if a.json else ""))
    return 0
