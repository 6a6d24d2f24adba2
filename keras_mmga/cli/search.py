"""`keras-mmga search`: the gallery images closest to each query image, with an exported ONNX model.

The gallery's features are computed once (with progress) and kept in an index
(--index PREFIX: PREFIX.index.npz + PREFIX.index.json, + PREFIX.index.faiss
with --backend faiss); the index is rebuilt when the model, the gallery folder
or the search settings differ. A folder of queries gives one result block per
image. Exits with status 2 and a one-line message for a missing or invalid
model, gallery, query, index or option.

Example:
    keras-mmga search Market-1501/query --gallery Market-1501/bounding_box_test \
        --model exported/mmga_market.onnx --index runs/market_gallery --topk 10 \
        --backend faiss --faiss-index IVF1024,Flat --nprobe 16
"""

import argparse
import os
import sys


def positive_int(text):
    """argparse type: refuses 0 and negatives at parse time, before any model or gallery is loaded."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(p):
    p.add_argument("query", help="a query image, or a folder of them (one result block per image)")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="exported .onnx model (keras-mmga export turns a .keras checkpoint into one)",
    )
    p.add_argument("--index", help="index file prefix, in an existing folder (built and saved if missing or stale)")
    p.add_argument("--topk", type=positive_int, default=10, help="results per query")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per ONNX Runtime call")
    p.add_argument(
        "--backend",
        choices=("numpy", "faiss"),
        default="numpy",
        help="exact brute force in NumPy, or FAISS (pip install faiss-cpu)",
    )
    p.add_argument(
        "--faiss-index",
        default="Flat",
        help="FAISS index-factory string: Flat (exact), IVF<nlist>,Flat, IVF<nlist>,SQ8, HNSW<M>, ...",
    )
    p.add_argument("--nprobe", type=positive_int, help="FAISS IVF: lists visited per query")
    p.add_argument(
        "--ef-search",
        dest="ef_search",
        type=positive_int,
        help="FAISS HNSW: candidate list size at search time (FAISS's efSearch)",
    )
    p.add_argument(
        "--ef-construction",
        dest="ef_construction",
        type=positive_int,
        help="FAISS HNSW: candidate list size while building (FAISS's efConstruction)",
    )


def format_distance(d):
    """Four decimals, or three significant digits below 1e-3 (a near-duplicate is not 0.0000); inf stays inf."""
    if d == 0 or d >= 1e-3:
        return f"{d:.4f}"
    return f"{d:.2e}"


def format_camera(camid):
    """A camera as the file names number it (`c5` -> 5: stored 0-based, printed 1-based); "-" when unknown."""
    return "-" if int(camid) < 0 else str(int(camid) + 1)


def format_pid(pid, camid):
    """An identity as the file names write it (-1: Market-1501's junk); "-" for a name without one (no camera)."""
    return "-" if int(camid) < 0 else str(int(pid))


def _query_paths(query):
    from keras_mmga.image_io import IMAGE_SUFFIXES, list_images, read_image

    if os.path.isdir(query):
        paths = list_images(query, "Query folder")
        if not paths:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in query folder {query!r}.")
    else:
        paths = [query]
    for path in paths:
        read_image(path)  # a bad query fails before the gallery is embedded
    return paths


def run(a):
    from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor

    search = {"backend": a.backend}
    if a.backend == "faiss":
        search.update(
            faiss_index=a.faiss_index, nprobe=a.nprobe, efSearch=a.ef_search, efConstruction=a.ef_construction
        )
    if a.backend == "numpy" and (a.faiss_index != "Flat" or a.nprobe or a.ef_search or a.ef_construction):
        raise ValueError("--faiss-index, --nprobe, --ef-search and --ef-construction need --backend faiss.")
    if a.index is not None:
        folder = os.path.dirname(os.path.abspath(a.index))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--index {a.index!r}: folder {folder!r} does not exist (create it first).")
    queries = _query_paths(a.query)
    if not os.path.isdir(a.gallery):  # before the model loads (and warns about its card)
        raise FileNotFoundError(f"Gallery folder not found: {a.gallery!r}.")
    extractor = OnnxFeatureExtractor(a.model, batch_size=a.batch_size)
    rebuilding = None if a.quiet else (lambda why: print(f"index {a.index!r}: {why}; rebuilding", file=sys.stderr))
    index = GalleryIndex.load_or_build(
        extractor, a.gallery, a.index, on_rebuild=rebuilding, verbose=not a.quiet, **search
    )
    distances, rows = index.search(extractor(queries), a.topk)
    for q, query in enumerate(queries):
        if q:
            print()
        print(f"query {query}")
        print(f"{'rank':>4}  {'distance':>9}  {'pid':>5}  {'cam':>3}  path")
        for rank, (d, i) in enumerate(((d, i) for d, i in zip(distances[q], rows[q]) if i >= 0), start=1):
            print(
                f"{rank:4d}  {format_distance(float(d)):>9}  {format_pid(index.pids[i], index.camids[i]):>5}  "
                f"{format_camera(index.camids[i]):>3}  {index.paths[i]}"
            )
    return 0
