"""GalleryIndex with the FAISS backend: exact = brute force, approximate recall, save/load, add, missing faiss."""

import builtins
import json
import os

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor

pytest.importorskip("faiss", reason="faiss-cpu is in the test extra; the FAISS backend is optional elsewhere")


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n_ids=60, views=12, distractors=300, dim=64, seed=0):
    """Re-ID-like features: identities with several noisy views (cosine ~0.85 to their centre), plus
    distractors; one held-out query view per identity."""
    rng = np.random.RandomState(seed)
    centres = _unit(rng.randn(n_ids, dim))
    gallery = _unit(np.repeat(centres, views, axis=0) + 0.6 * rng.randn(n_ids * views, dim) / np.sqrt(dim))
    gallery = np.concatenate([gallery, _unit(rng.randn(distractors, dim))])
    queries = _unit(centres + 0.6 * rng.randn(n_ids, dim) / np.sqrt(dim))
    return gallery, queries


def _exact_topk(gallery, queries, k):
    """Reference: float64 Euclidean distances, stable sort (ties by row)."""
    d = np.linalg.norm(gallery.astype(np.float64)[None] - queries.astype(np.float64)[:, None], axis=2)
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


def _index(features, **search):
    n = len(features)
    return GalleryIndex(
        features, [f"{i:04d}_c1s1_000000_00.jpg" for i in range(n)], np.arange(n), np.zeros(n), **search
    )


def test_exact_faiss_top_k_equals_numpy_and_brute_force():
    gallery, queries = _clustered(seed=1)
    expected_rows, expected_d = _exact_topk(gallery, queries, 10)
    numpy_d, numpy_rows = _index(gallery).search(queries, 10)
    faiss_index = _index(gallery, backend="faiss")
    assert faiss_index.backend == "faiss" and faiss_index.search_config == {"backend": "faiss", "faiss_index": "Flat"}
    faiss_d, faiss_rows = faiss_index.search(queries, 10)
    np.testing.assert_array_equal(numpy_rows, expected_rows)
    np.testing.assert_array_equal(faiss_rows, expected_rows)
    np.testing.assert_allclose(numpy_d, expected_d, atol=1e-5)
    np.testing.assert_allclose(faiss_d, expected_d, atol=1e-3)  # sqrt(2 - 2 cos): ~1e-4 near 0
    hits = faiss_index.query(queries[3], topk=3)
    assert [h["index"] for h in hits] == expected_rows[3, :3].tolist() and hits[0]["pid"] == expected_rows[3, 0]
    assert len(faiss_index.search(queries, 10_000)[1][0]) == len(gallery)  # k is capped at the gallery size


@pytest.mark.parametrize("faiss_index,knobs", [("IVF16,Flat", {"nprobe": 4}), ("HNSW16", {"efSearch": 64})])
def test_approximate_recall_on_a_clustered_set(faiss_index, knobs):
    gallery, queries = _clustered(seed=2)
    expected, _ = _exact_topk(gallery, queries, 10)
    index = _index(gallery, backend="faiss", faiss_index=faiss_index, **knobs)
    _, rows = index.search(queries, 10)
    recall = np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, expected)])
    assert recall >= 0.9, recall
    assert index.search_config == {"backend": "faiss", "faiss_index": faiss_index, **knobs}


def test_ivf_visiting_every_list_is_exact():
    gallery, queries = _clustered(seed=3)
    expected, _ = _exact_topk(gallery, queries, 10)
    _, rows = _index(gallery, backend="faiss", faiss_index="IVF16,Flat", nprobe=16).search(queries, 10)
    np.testing.assert_array_equal(rows, expected)


def test_save_load_round_trip_and_add_after_load(tmp_path):
    gallery, queries = _clustered(seed=4)
    first, rest = gallery[:400], gallery[400:]
    index = _index(first, backend="faiss", faiss_index="IVF8,Flat", nprobe=8)
    index.meta = {"model": "m.onnx"}
    index.save(tmp_path / "g")
    assert sorted(os.listdir(tmp_path)) == ["g.index.faiss", "g.index.json", "g.index.npz"]
    saved = json.loads((tmp_path / "g.index.json").read_text())
    assert saved["search"] == {"backend": "faiss", "faiss_index": "IVF8,Flat", "nprobe": 8}
    loaded = GalleryIndex.load(tmp_path / "g")
    assert loaded.backend == "faiss" and loaded.search_config == index.search_config
    assert loaded.paths == index.paths and loaded.meta == index.meta and len(loaded) == 400
    np.testing.assert_array_equal(loaded.pids, index.pids)
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])
    np.testing.assert_allclose(loaded.features, first, atol=1e-7)  # IVF-Flat stores the vectors as they are
    # Add the rest after loading: the same answers as all features searched exactly (every list probed).
    names = [f"{i:04d}_c2s1_000000_00.jpg" for i in range(400, len(gallery))]
    loaded.add(rest, names)
    assert len(loaded) == len(gallery) and loaded.pids[400] == 400 and loaded.camids[400] == 1  # parsed from names
    expected, _ = _exact_topk(gallery, queries, 10)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], expected)
    loaded.save(tmp_path / "g")
    again = GalleryIndex.load(tmp_path / "g", nprobe=2)  # a search knob changed at load
    assert len(again) == len(gallery) and again.paths[-1] == names[-1] and again.search_config["nprobe"] == 2


def test_numpy_index_add_and_round_trip(tmp_path):
    gallery, queries = _clustered(seed=5)
    index = _index(gallery[:100])
    index.add(
        gallery[100:],
        [f"x{i}.jpg" for i in range(100, len(gallery))],
        np.arange(100, len(gallery)),
        np.zeros(len(gallery) - 100),
    )
    index.save(tmp_path / "n")
    loaded = GalleryIndex.load(tmp_path / "n")
    assert loaded.backend == "numpy" and len(loaded) == len(gallery)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], _exact_topk(gallery, queries, 10)[0])


def test_bad_settings_are_clear_errors(tmp_path):
    gallery, _ = _clustered(seed=6)
    with pytest.raises(ValueError, match="nprobe applies to IVF"):
        _index(gallery, backend="faiss", nprobe=4)
    with pytest.raises(ValueError, match="efSearch applies to HNSW"):
        _index(gallery, backend="faiss", faiss_index="IVF8,Flat", efSearch=4)
    with pytest.raises(ValueError, match="not a FAISS index-factory string"):
        _index(gallery, backend="faiss", faiss_index="IVFxx")
    with pytest.raises(ValueError, match="trains on the first features.*at least as large as number of clusters"):
        _index(gallery[:5], backend="faiss", faiss_index="IVF16,Flat")
    with pytest.raises(ValueError, match="L2-normalised"):
        _index(gallery * 2, backend="faiss")
    with pytest.raises(ValueError, match="need backend='faiss'"):
        _index(gallery, nprobe=4)
    with pytest.raises(ValueError, match="backend must be one of"):
        _index(gallery, backend="annoy")
    index = _index(gallery, backend="faiss")
    with pytest.raises(ValueError, match="same length"):
        index.add(gallery[:3], ["a.jpg"])
    assert len(index) == len(gallery)  # nothing half-added
    index.save(tmp_path / "g")
    os.remove(tmp_path / "g.index.faiss")
    with pytest.raises(FileNotFoundError, match=r"g\.index\.faiss"):
        GalleryIndex.load(tmp_path / "g")


def test_clear_error_when_faiss_is_not_installed(tmp_path, monkeypatch):
    gallery, _ = _clustered(seed=7)
    _index(gallery, backend="faiss").save(tmp_path / "g")
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    for make in (lambda: _index(gallery, backend="faiss"), lambda: GalleryIndex.load(tmp_path / "g")):
        with pytest.raises(ImportError, match=r"backend='faiss' needs the faiss package: pip install faiss-cpu"):
            make()
    assert _index(gallery).backend == "numpy"  # the NumPy backend needs nothing extra


# ------------------------------------------------------------------ the search command with FAISS
def _normalised_colour_model(path):
    """A hand-made export: feature = L2-normalised mean colour (RGB), 64x32 NHWC."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("LpNormalization", ["mean"], ["features"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 64, 32, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_search_command_with_faiss(tmp_path, capsys):
    from keras_mmga.cli import main

    model = _normalised_colour_model(tmp_path / "colour.onnx")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    colours = [(200, 20, 20), (20, 200, 20), (20, 20, 200), (150, 150, 20)]  # BGR
    for i, bgr in enumerate(colours):
        cv2.imwrite(str(gallery / f"{i + 1:04d}_c{i + 1}s1_000100_01.png"), np.full((128, 64, 3), bgr, np.uint8))
    query = tmp_path / "q.png"
    cv2.imwrite(str(query), np.full((128, 64, 3), (30, 190, 25), np.uint8))  # greenish: pid 2 first
    argv = [
        "search",
        str(query),
        "--gallery",
        str(gallery),
        "--model",
        model,
        "--index",
        str(tmp_path / "g"),
        "--topk",
        "2",
        "--backend",
        "faiss",
        "--faiss-index",
        "HNSW8",
        "--ef-search",
        "16",
        "--ef-construction",
        "20",
    ]
    # FAISS's camelCase spelling is refused with the command line's one.
    assert main([a.replace("--ef-search", "--efSearch") for a in argv]) == 2
    err = capsys.readouterr().err
    assert err == "error: --efSearch is now --ef-search (keras-mmga search --help lists the flags)\n"
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert int(lines[2].split()[2]) == 2 and len(lines) == 4
    extractor = OnnxFeatureExtractor(model)
    loaded = GalleryIndex.load(tmp_path / "g")
    assert loaded.backend == "faiss" and loaded.search_config["efSearch"] == 16
    assert (
        loaded.stale_reason(extractor, gallery, backend="faiss", faiss_index="HNSW8", efSearch=16, efConstruction=20)
        is None
    )
    assert main(argv) == 0 and "rebuilding" not in capsys.readouterr().err  # the saved index answers
    assert "search settings" in loaded.stale_reason(extractor, gallery, backend="numpy")
    assert main(argv[:-8]) == 0  # numpy asked for now: rebuilt, said so
    assert "search settings" in capsys.readouterr().err and GalleryIndex.load(tmp_path / "g").backend == "numpy"


def test_search_and_export_commands_import_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, keras_mmga.cli.search, keras_mmga.cli.export, keras_mmga.deploy; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'onnx', 'faiss')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
