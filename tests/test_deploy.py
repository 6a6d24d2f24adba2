"""ONNX Runtime deployment: extractor vs Keras on files, colour orders, layouts, gallery search, bad input."""

import importlib.util
import json
import os
import shutil

import cv2
import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx import TensorProto, helper

from keras_mmga import MMGA
from keras_mmga.data.pipeline import decode_resize
from keras_mmga.deploy import (
    CARD_FORMAT,
    GalleryIndex,
    OnnxFeatureExtractor,
    parse_reid_name,
    preprocess,
    read_image,
)
from keras_mmga.export import export_onnx

ROOT = os.path.join(os.path.dirname(__file__), "..")
SIZE = (64, 32)
# Market-1501 names (camid 0-based after parsing) and one that does not parse.
NAMES = [
    "0001_c1s1_000100_01.png",
    "0001_c2s1_000200_01.png",
    "0002_c3s1_000300_01.png",
    "0003_c1s2_000400_01.png",
    "0003_c6s1_000500_02.png",
    "holiday_photo.png",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    keras.utils.set_random_seed(1)
    model = MMGA(5, variant="mmga", input_shape=SIZE + (3,), backbone_weights=None)
    info = export_onnx(model, out / "m.onnx")
    gallery = out / "gallery"
    gallery.mkdir()
    rng = np.random.RandomState(0)
    for i, name in enumerate(NAMES):
        # Market-size crops (resized by the extractor), one of another size; smooth so resizing matters.
        shape = (128, 64, 3) if i != 2 else (150, 59, 3)
        image = cv2.GaussianBlur(rng.randint(0, 256, shape, np.uint8), (5, 5), 0)
        cv2.imwrite(str(gallery / name), image)
    return model, info["onnx_path"], gallery


def _keras(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _paths(gallery):
    return sorted(str(gallery / n) for n in NAMES)


@pytest.mark.slow
def test_extractor_on_files_matches_keras_on_the_training_pipeline(exported):
    model, onnx_path, gallery = exported
    paths = _paths(gallery)
    extractor = OnnxFeatureExtractor(onnx_path, batch_size=4)  # 2 batches: 4 + 2
    got = extractor(paths)
    # What training and evaluation feed the model: tf decode + tf.image.resize bilinear.
    pipeline = np.stack([decode_resize(p, SIZE).numpy() for p in paths])
    assert got.shape == (len(paths), 2048)
    assert np.max(np.abs(got - _keras(model, pipeline))) <= 1e-4


@pytest.mark.slow
def test_jpeg_decoding_matches_tensorflow_accurate_idct(exported, tmp_path):
    model, onnx_path, _ = exported
    rng = np.random.RandomState(3)
    path = str(tmp_path / "0004_c1s1_000100_01.jpg")
    cv2.imwrite(path, cv2.GaussianBlur(rng.randint(0, 256, (128, 64, 3), np.uint8), (3, 3), 0))
    decoded = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(read_image(path)[..., ::-1], decoded)
    expected = _keras(model, tf.image.resize(tf.cast(decoded, tf.float32)[None], SIZE).numpy())
    assert np.max(np.abs(OnnxFeatureExtractor(onnx_path)(path) - expected)) <= 1e-4


def test_resize_matches_tf_bilinear():
    rng = np.random.RandomState(0)
    for shape, size in [((128, 64), (64, 32)), ((128, 64), (384, 128)), ((97, 41), (64, 32)), ((300, 111), (384, 128))]:
        image = rng.randint(0, 256, shape + (3,), np.uint8)
        expected = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear").numpy()
        assert np.max(np.abs(preprocess(image, size) - expected)) < 2e-3  # grey levels


@pytest.mark.slow
def test_arrays_rgb_bgr_batches_and_sizes(exported):
    _, onnx_path, gallery = exported
    paths = _paths(gallery)
    extractor = OnnxFeatureExtractor(onnx_path)
    from_files = extractor(paths)
    bgr = [cv2.imread(p) for p in paths]
    rgb = [x[..., ::-1].copy() for x in bgr]
    np.testing.assert_allclose(extractor(bgr, color="bgr"), from_files, atol=1e-6)
    np.testing.assert_allclose(extractor(rgb), from_files, atol=1e-6)
    np.testing.assert_allclose(extractor(rgb[0]), from_files[:1], atol=1e-6)  # one (H, W, 3) array
    np.testing.assert_allclose(extractor(np.stack(rgb[:2])), from_files[:2], atol=1e-6)  # an (N, H, W, 3) batch
    np.testing.assert_allclose(extractor([rgb[0].astype(np.float32)]), from_files[:1], atol=1e-6)
    # Channel order matters: the same pixels read as the other order give another feature.
    assert np.max(np.abs(extractor(rgb[0], color="bgr") - from_files[:1])) > 1e-3
    assert extractor.image_size == SIZE and extractor.layout == "NHWC" and extractor.feature_dim == 2048
    assert extractor.card["variant"] == "mmga"


def _mean_colour_model(path, layout):
    """A hand-made export whose feature is the per-channel mean (RGB order): layouts without a card."""
    h, w = SIZE
    shape, axes = (["N", 3, h, w], [2, 3]) if layout == "NCHW" else (["N", h, w, 3], [1, 2])
    nodes = [helper.make_node("ReduceMean", ["images"], ["features"], axes=axes, keepdims=0)]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_layout_from_the_graph_without_a_card(tmp_path, layout):
    extractor = OnnxFeatureExtractor(_mean_colour_model(tmp_path / "mean.onnx", layout))
    assert extractor.card is None and extractor.layout == layout and extractor.image_size == SIZE
    image = np.zeros((128, 64, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # RGB
    np.testing.assert_allclose(extractor(image), [[10, 20, 30]], atol=1e-4)
    np.testing.assert_allclose(extractor(image[..., ::-1].copy(), color="bgr"), [[10, 20, 30]], atol=1e-4)


@pytest.mark.slow
def test_gallery_top1_is_itself_and_index_round_trip(exported, tmp_path):
    _, onnx_path, gallery = exported
    extractor = OnnxFeatureExtractor(onnx_path)
    index = GalleryIndex.build(extractor, gallery)
    assert index.pids.tolist() == [1, 1, 2, 3, 3, -1] and index.camids.tolist() == [0, 1, 2, 0, 5, -1]
    # A gallery image queried by its file is its own nearest neighbour.
    for i, path in enumerate(index.paths):
        hits = index.query(path, topk=3)
        assert hits[0]["path"] == path and hits[0]["index"] == i and hits[0]["distance"] < 1e-3
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    index.save(tmp_path / "idx" / "g")
    loaded = GalleryIndex.load(tmp_path / "idx" / "g")
    np.testing.assert_array_equal(loaded.features, index.features)
    assert loaded.paths == index.paths and loaded.pids.tolist() == index.pids.tolist()
    assert loaded.camids.tolist() == index.camids.tolist() and loaded.meta == index.meta
    hits = loaded.query(loaded.features[2], topk=100)
    assert len(hits) == len(NAMES) and hits[0]["pid"] == 2 and hits[0]["distance"] < 1e-6
    distances = np.linalg.norm(loaded.features - loaded.features[2], axis=1)
    assert [h["index"] for h in hits] == np.argsort(distances, kind="stable").tolist()
    assert loaded.query(str(gallery / NAMES[3]), extractor=extractor)[0]["pid"] == 3
    assert loaded.stale_reason(extractor, gallery) is None


def _search_script():
    spec = importlib.util.spec_from_file_location("search", os.path.join(ROOT, "scripts", "search.py"))
    search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search)
    return search


@pytest.mark.slow
def test_stale_index_and_search_script(exported, tmp_path, capsys):
    _, onnx_path, gallery = exported
    folder = tmp_path / "gallery"
    shutil.copytree(gallery, folder)
    search = _search_script()
    query = str(folder / NAMES[1])
    argv = [query, "--gallery", str(folder), "--model", onnx_path, "--index", str(tmp_path / "g"), "--topk", "3"]
    assert search.main(argv) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 5 and lines[0] == f"query {query}" and lines[2].endswith(query)
    rank, distance, pid, cam = lines[2].split()[:4]
    # The camera as the file name numbers it (c2), not the 0-based camid stored in the index.
    assert (rank, pid, cam) == ("1", "1", "2") and "_c2s" in NAMES[1] and float(distance) < 1e-3
    assert "gallery features: 6/6 images" in out.err  # progress while the index is built
    assert os.path.isfile(tmp_path / "g.index.npz") and "rebuilding" not in out.err
    assert search.main(argv) == 0 and "rebuilding" not in capsys.readouterr().err  # loaded, not rebuilt
    shutil.copy(folder / NAMES[0], folder / "0009_c1s1_000900_01.png")
    assert GalleryIndex.load(tmp_path / "g").stale_reason(OnnxFeatureExtractor(onnx_path), folder) is not None
    assert search.main(argv) == 0 and "images changed; rebuilding" in capsys.readouterr().err
    assert len(GalleryIndex.load(tmp_path / "g")) == len(NAMES) + 1


def test_parse_reid_name():
    assert parse_reid_name("/x/0002_c3s1_000300_01.jpg") == (2, 2)
    assert parse_reid_name("0005_c8_f0012345.jpg") == (5, 7)  # DukeMTMC-reID
    assert parse_reid_name("-1_c1s1_000000_00.jpg") == (-1, 0)
    assert parse_reid_name("photo.jpg") == (-1, -1)


@pytest.mark.slow
def test_bad_inputs_raise(exported, tmp_path):
    _, onnx_path, gallery = exported
    extractor = OnnxFeatureExtractor(onnx_path)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        extractor(str(tmp_path / "nope.jpg"))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="Cannot decode image .*text.jpg"):
        extractor(str(tmp_path / "text.jpg"))
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*GRAY2RGB"):
        extractor([np.zeros((64, 32), np.uint8)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*alpha"):
        extractor([np.zeros((64, 32, 4), np.uint8)])
    with pytest.raises(ValueError, match="uint8 or float"):
        extractor([np.zeros((64, 32, 3), np.int16)])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        extractor([np.full((64, 32, 3), 300.0, np.float32)])
    with pytest.raises(ValueError, match="finite"):
        extractor([np.full((64, 32, 3), np.nan, np.float32)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor([np.full((64, 32, 3), 0.5, np.float32)])
    with pytest.raises(ValueError, match="color"):
        extractor([np.zeros((64, 32, 3), np.uint8)], color="hsv")
    with pytest.raises(TypeError, match="paths or arrays"):
        extractor(42)
    with pytest.raises(ValueError, match="No images"):
        extractor([])
    # The ONNX input itself has a fixed H, W: a wrong size or layout gets the expected shape.
    with pytest.raises(ValueError, match=r"\('N', 64, 32, 3\).*got \(1, 32, 32, 3\)"):
        extractor.run(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="float32"):
        extractor.run(np.zeros((1, 64, 32, 3), np.float64))
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxFeatureExtractor(tmp_path / "missing.onnx")
    model = onnx.load(onnx_path)
    model.graph.input[0].name = "input_1"
    for node in model.graph.node:
        node.input[:] = ["input_1" if i == "images" else i for i in node.input]
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a keras-mmga export"):
        OnnxFeatureExtractor(tmp_path / "other.onnx")
    index = GalleryIndex.build(extractor, gallery)
    with pytest.raises(ValueError, match="dims"):
        index.query(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="topk"):
        index.query(index.features[0], topk=0)
    index.save(tmp_path / "g")
    with pytest.raises(ValueError, match="extractor"):
        GalleryIndex.load(tmp_path / "g").query(str(gallery / NAMES[0]))
    with pytest.raises(FileNotFoundError, match=r"nothing\.index\.npz"):
        GalleryIndex.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        GalleryIndex.build(extractor, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="Gallery folder"):
        GalleryIndex.build(extractor, tmp_path / "absent")


# ------------------------------------------- cheap models: card, index files, script errors
def _colour_gallery(folder, names=("0001_c1s1_000100_01.png", "0002_c2s1_000200_01.png", "0003_c3s1_000300_01.png")):
    """Flat-colour images: the mean-colour model's features tell them apart."""
    folder.mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((128, 64, 3), 40 * (i + 1), np.uint8))
    return folder


def _card(layout="NHWC", **changes):
    h, w = SIZE
    shape = ["N", 3, h, w] if layout == "NCHW" else ["N", h, w, 3]
    return {"format": CARD_FORMAT, "input": {"name": "images", "layout": layout, "shape": shape}, **changes}


def test_model_card_is_checked_before_it_is_trusted(tmp_path):
    onnx_path = _mean_colour_model(tmp_path / "mean.onnx", "NHWC")
    card_path = tmp_path / "mean.json"
    card_path.write_text(json.dumps(_card(variant="mean")))
    extractor = OnnxFeatureExtractor(onnx_path)
    assert extractor.card["variant"] == "mean" and extractor.layout == "NHWC"
    card_path.write_text("{not json")
    with pytest.raises(ValueError, match=r"mean\.json.* is not valid JSON"):
        OnnxFeatureExtractor(onnx_path)
    card_path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"mean\.json.* is not valid JSON"):
        OnnxFeatureExtractor(onnx_path)
    # A gallery index an older version saved under the model's name, another tool's JSON, a list.
    for foreign in ({"format": 1, "paths": ["a.jpg"]}, {"input": {"layout": "NHWC"}}, [1, 2]):
        card_path.write_text(json.dumps(foreign))
        with pytest.raises(ValueError, match=r"mean\.json.* is not a keras-mmga model card"):
            OnnxFeatureExtractor(onnx_path)
    card_path.write_text(json.dumps({"format": 1, "paths": []}))
    with pytest.raises(ValueError, match="looks like a gallery index"):
        OnnxFeatureExtractor(onnx_path)
    card_path.write_text(json.dumps(dict(_card(), input={"layout": "NHCW", "shape": ["N", 64, 32, 3]})))
    with pytest.raises(ValueError, match=r"mean\.json.*expected \"input\" with \"layout\""):
        OnnxFeatureExtractor(onnx_path)
    card_path.write_text(json.dumps(_card("NCHW")))  # another export's card: NCHW for an NHWC graph
    with pytest.raises(ValueError, match=r"mean\.json.* describes input .*another export"):
        OnnxFeatureExtractor(onnx_path)
    card_path.unlink()  # no card: the graph's input shape decides
    assert OnnxFeatureExtractor(onnx_path).card is None


def test_unloadable_onnx_file_names_it(tmp_path):
    (tmp_path / "broken.onnx").write_text("not a model")
    with pytest.raises(ValueError, match=r"ONNX Runtime cannot load .*broken\.onnx"):
        OnnxFeatureExtractor(tmp_path / "broken.onnx")


def test_index_saved_under_the_model_name_keeps_the_card(tmp_path):
    onnx_path = _mean_colour_model(tmp_path / "mean.onnx", "NHWC")
    (tmp_path / "mean.json").write_text(json.dumps(_card(variant="mean")))
    extractor = OnnxFeatureExtractor(onnx_path)
    index = GalleryIndex.build(extractor, _colour_gallery(tmp_path / "gallery"))
    index.save(tmp_path / "mean")  # the model's own prefix
    assert sorted(os.listdir(tmp_path)) == ["gallery", "mean.index.json", "mean.index.npz", "mean.json", "mean.onnx"]
    assert OnnxFeatureExtractor(onnx_path).card["variant"] == "mean"
    loaded = GalleryIndex.load(tmp_path / "mean")
    assert loaded.paths == index.paths and loaded.meta == index.meta
    np.testing.assert_array_equal(loaded.features, index.features)


def test_foreign_or_broken_index_files_are_named(tmp_path):
    extractor = OnnxFeatureExtractor(_mean_colour_model(tmp_path / "mean.onnx", "NHWC"))
    GalleryIndex.build(extractor, _colour_gallery(tmp_path / "gallery")).save(tmp_path / "g")
    meta_path, npz_path = tmp_path / "g.index.json", tmp_path / "g.index.npz"
    meta = json.loads(meta_path.read_text())
    with pytest.raises(FileNotFoundError, match=r"other\.index\.npz.*PREFIX\.index\.npz"):
        GalleryIndex.load(tmp_path / "other")
    cases = [
        ("{oops", r"g\.index\.json.* is not valid JSON"),
        (json.dumps(_card()), r"g\.index\.json.* is not a keras-mmga gallery index"),  # a model card
        (json.dumps({k: v for k, v in meta.items() if k != "paths"}), r"g\.index\.json.*\"paths\""),
        (json.dumps(dict(meta, paths=meta["paths"][:2])), r"g\.index\.npz.*same length"),
    ]
    for text, message in cases:
        meta_path.write_text(text)
        with pytest.raises(ValueError, match=message):
            GalleryIndex.load(tmp_path / "g")
    meta_path.write_text(json.dumps(meta))
    arrays = dict(np.load(npz_path))
    np.savez(npz_path, features=arrays["features"], pids=arrays["pids"])
    with pytest.raises(ValueError, match=r"g\.index\.npz.*camids"):
        GalleryIndex.load(tmp_path / "g")
    npz_path.write_text("not a zip")
    with pytest.raises(ValueError, match=r"g\.index\.npz.* is not a keras-mmga gallery index"):
        GalleryIndex.load(tmp_path / "g")


def test_load_or_build_reuses_only_a_current_index(tmp_path, monkeypatch):
    extractor = OnnxFeatureExtractor(_mean_colour_model(tmp_path / "mean.onnx", "NHWC"))
    folder = _colour_gallery(tmp_path / "gallery")
    reasons = []
    built = GalleryIndex.load_or_build(extractor, folder, tmp_path / "idx" / "g", on_rebuild=reasons.append)
    assert os.path.isfile(tmp_path / "idx" / "g.index.npz") and built.extractor is extractor and reasons == []
    np.testing.assert_allclose(built.features[:, 0], [40, 80, 120], atol=1e-4)
    monkeypatch.setattr(GalleryIndex, "build", classmethod(lambda cls, *a: pytest.fail("rebuilt a current index")))
    loaded = GalleryIndex.load_or_build(extractor, folder, tmp_path / "idx" / "g", on_rebuild=reasons.append)
    assert loaded.paths == built.paths and loaded.extractor is extractor and reasons == []
    monkeypatch.undo()
    cv2.imwrite(str(folder / "0004_c1s1_000400_01.png"), np.full((128, 64, 3), 200, np.uint8))
    rebuilt = GalleryIndex.load_or_build(extractor, folder, tmp_path / "idx" / "g", on_rebuild=reasons.append)
    assert reasons == ["the folder's images changed"] and len(rebuilt) == 4
    assert len(GalleryIndex.load(tmp_path / "idx" / "g")) == 4
    unsaved = GalleryIndex.load_or_build(extractor, folder)  # no prefix: nothing written
    assert len(unsaved) == 4 and sorted(os.listdir(tmp_path / "idx")) == ["g.index.json", "g.index.npz"]
    with pytest.raises(FileNotFoundError, match="Gallery folder not found.*absent"):
        GalleryIndex.load_or_build(extractor, tmp_path / "absent", tmp_path / "idx" / "g")


def test_search_script_bad_input_exits_2_with_one_line(tmp_path, capsys):
    search = _search_script()
    onnx_path = _mean_colour_model(tmp_path / "mean.onnx", "NHWC")
    folder = _colour_gallery(tmp_path / "gallery")
    query = str(folder / "0001_c1s1_000100_01.png")
    base = ["--gallery", str(folder), "--model", onnx_path]
    for argv, message in [
        ([query] + base[:3] + [str(tmp_path / "missing.onnx")], "ONNX model not found"),
        ([query, "--gallery", str(tmp_path / "absent"), "--model", onnx_path], "Gallery folder not found"),
        ([str(tmp_path / "nope.jpg")] + base, "Image not found"),
    ]:
        assert search.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    for flag in ("--topk", "--batch-size"):
        assert search.main([query] + base + [flag, "0"]) == 2
        err = capsys.readouterr().err
        assert f"error: argument {flag}: must be at least 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert search.main([query] + base + ["--topk", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].endswith(query)
    # An --index under a folder that does not exist is refused, not created.
    assert search.main([query] + base + ["--index", str(tmp_path / "absent" / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --index") and "does not exist" in err and not os.path.exists(tmp_path / "absent")
    assert search.main([query] + base + ["--nprobe", "4"]) == 2
    assert "need --backend faiss" in capsys.readouterr().err
    (tmp_path / "no_images").mkdir()
    assert search.main([str(tmp_path / "no_images")] + base) == 2
    assert "No images" in capsys.readouterr().err


def test_search_a_folder_of_queries_gives_one_block_per_image(tmp_path, capsys):
    search = _search_script()
    onnx_path = _mean_colour_model(tmp_path / "mean.onnx", "NHWC")
    folder = _colour_gallery(tmp_path / "gallery")
    queries = tmp_path / "queries"
    queries.mkdir()
    # Grey 41 is nearest gallery grey 40 (image 1), grey 119 nearest 120 (image 3).
    cv2.imwrite(str(queries / "a.png"), np.full((128, 64, 3), 41, np.uint8))
    cv2.imwrite(str(queries / "b.png"), np.full((128, 64, 3), 119, np.uint8))
    assert search.main([str(queries), "--gallery", str(folder), "--model", onnx_path, "--topk", "2"]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert len(blocks) == 2
    for block, query, nearest, second in zip(blocks, ("a.png", "b.png"), (1, 3), (2, 2)):
        lines = block.splitlines()
        assert lines[0] == f"query {queries / query}" and len(lines) == 4
        assert [int(line.split()[2]) for line in lines[2:]] == [nearest, second]
        # Mean-colour features: distance = sqrt(3) * grey difference, 1 grey level here.
        assert float(lines[2].split()[1]) == pytest.approx(np.sqrt(3), abs=1e-3)


def test_distances_are_printed_without_hiding_small_values():
    from keras_mmga.cli.search import format_distance

    assert format_distance(0.61234) == "0.6123" and format_distance(1e-3) == "0.0010"
    assert format_distance(3.21e-5) == "3.21e-05" and format_distance(4e-9) == "4.00e-09"
    assert format_distance(0.0) == "0.0000"


# ------------------------------------------- a deploy machine: numpy, OpenCV and ONNX Runtime only
_DEPLOY_CHECK = r"""
import importlib.util, json, subprocess, sys
for absent in ("tensorflow", "keras", "tf2onnx", "onnx"):
    assert importlib.util.find_spec(absent) is None, absent + " is installed in the deploy environment"
from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor
onnx_path, gallery, prefix = sys.argv[1:4]
extractor = OnnxFeatureExtractor(onnx_path, batch_size=4)
index = GalleryIndex.build(extractor, gallery, verbose=False)
index.save(prefix)
hits = GalleryIndex.load(prefix).query(index.paths[2], topk=2, extractor=extractor)
search = subprocess.run([sys.executable, "-m", "keras_mmga", "search", index.paths[4], "--gallery", gallery,
                         "--model", onnx_path, "--index", prefix, "--topk", "1"], capture_output=True, text=True)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "onnx"))
print(json.dumps({"features": index.features.tolist(), "top1": hits[0]["index"], "loaded": loaded,
                  "search_rc": search.returncode, "search_out": search.stdout, "search_err": search.stderr}))
"""


@pytest.fixture(scope="session")
def deploy_python(tmp_path_factory):
    """A venv with only requirements-deploy.txt (numpy, OpenCV, ONNX Runtime), built once per test session.

    pip's own cache makes rebuilds quick (~15 s here); the package itself is
    the checkout, on PYTHONPATH, as `pip install --no-deps` would put it.
    """
    import subprocess
    import sys

    env_dir = tmp_path_factory.mktemp("deploy_venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = str(env_dir / "bin" / "python")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            os.path.join(ROOT, "requirements-deploy.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, f"pip could not build the deploy environment:\n{pip.stdout}\n{pip.stderr}"
    return python


@pytest.mark.slow
def test_deploy_runs_with_only_numpy_opencv_and_onnxruntime(exported, deploy_python, tmp_path):
    import subprocess

    model, onnx_path, gallery = exported
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.path.abspath(ROOT), "HOME": str(tmp_path)}
    run = subprocess.run(
        [deploy_python, "-c", _DEPLOY_CHECK, onnx_path, str(gallery), str(tmp_path / "g")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []  # nothing of TensorFlow / Keras / onnx was imported
    # The features match Keras on the training pipeline's decoding and resizing, as in the full install.
    paths = _paths(gallery)
    expected = _keras(model, np.stack([decode_resize(p, SIZE).numpy() for p in paths]))
    assert np.max(np.abs(np.asarray(result["features"]) - expected)) <= 1e-4
    assert result["top1"] == 2
    assert result["search_rc"] == 0, result["search_err"]
    assert result["search_out"].splitlines()[2].endswith(paths[4])


def test_search_reads_webp_like_masks_and_names_a_keras_checkpoint(tmp_path, capsys):
    from keras_mmga.cli import main
    from keras_mmga.image_io import IMAGE_SUFFIXES, is_image_file, parse_reid_name
    from keras_mmga.masks.writer import IMAGE_EXTENSIONS

    assert IMAGE_EXTENSIONS == IMAGE_SUFFIXES and ".webp" in IMAGE_SUFFIXES and is_image_file("A.WEBP")
    assert parse_reid_name("0007_c5s1_000100_01.webp") == (7, 4)
    onnx_path = _mean_colour_model(tmp_path / "mean.onnx", "NHWC")
    gallery = _colour_gallery(tmp_path / "gallery", names=("0001_c1s1_000100_01.webp", "0002_c5s1_000200_01.webp"))
    query = tmp_path / "q.webp"
    cv2.imwrite(str(query), np.full((128, 64, 3), 80, np.uint8))
    assert main(["search", str(query), "--gallery", str(gallery), "--model", onnx_path, "--topk", "1"]) == 0
    rank, _, pid, cam, path = capsys.readouterr().out.strip().splitlines()[2].split()
    assert (rank, pid, cam) == ("1", "2", "5") and path.endswith("0002_c5s1_000200_01.webp")
    # A training checkpoint is not an export: the message says which command makes one.
    checkpoint = tmp_path / "best.keras"
    checkpoint.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert main(["search", str(query), "--gallery", str(gallery), "--model", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "export it first (keras-mmga export --model" in err and err.count("\n") == 1
