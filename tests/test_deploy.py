import cv2
import keras
import numpy as np
import pytest

from keras_mmga import MMGA
from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor
from keras_mmga.export import export_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    keras.utils.set_random_seed(1)
    model = MMGA(5, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None)
    info = export_onnx(model, out / "m.onnx", write_card=False)
    gallery = out / "gallery"
    gallery.mkdir()
    rng = np.random.RandomState(0)
    for i in range(6):
        # Already at the model size: no resizing differences between the paths.
        cv2.imwrite(str(gallery / f"{i + 1:04d}_c{i % 3 + 1}s1_000{i}00_01.png"), rng.randint(0, 256, (64, 32, 3), np.uint8))
    return model, info["onnx_path"], gallery


def test_extractor_on_files_matches_keras(exported):
    model, onnx_path, gallery = exported
    paths = sorted(str(p) for p in gallery.iterdir())
    extractor = OnnxFeatureExtractor(onnx_path, batch_size=4)
    got = extractor(paths)
    rgb = np.stack([cv2.imread(p)[..., ::-1] for p in paths]).astype("float32")
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(rgb)), atol=1e-4)
    # BGR arrays from OpenCV give the same features when declared as such.
    np.testing.assert_allclose(extractor([cv2.imread(paths[0])], color="bgr"), got[:1], atol=1e-5)


def test_gallery_top1_is_itself_and_index_round_trip(exported, tmp_path):
    _, onnx_path, gallery = exported
    extractor = OnnxFeatureExtractor(onnx_path)
    index = GalleryIndex.build(extractor, gallery)
    index.save(tmp_path / "g")
    loaded = GalleryIndex.load(tmp_path / "g")
    for i, path in enumerate(loaded.paths):
        hit = loaded.query(loaded.features[i], topk=3)[0]
        assert hit["path"] == path and hit["distance"] < 1e-6
    assert loaded.pids.tolist() == [1, 2, 3, 4, 5, 6] and loaded.camids.tolist() == [0, 1, 2, 0, 1, 2]


def test_bad_inputs_raise(exported, tmp_path):
    _, onnx_path, gallery = exported
    extractor = OnnxFeatureExtractor(onnx_path)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        extractor(str(tmp_path / "nope.jpg"))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        extractor([np.zeros((64, 32), np.uint8)])
    with pytest.raises(ValueError, match="uint8 or float"):
        extractor([np.zeros((64, 32, 3), np.int16)])
    with pytest.raises(ValueError, match="color"):
        extractor([np.zeros((64, 32, 3), np.uint8)], color="hsv")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxFeatureExtractor(tmp_path / "missing.onnx")
    index = GalleryIndex.build(extractor, gallery)
    with pytest.raises(ValueError, match="dims"):
        index.query(np.zeros(3))
    # A wrong size at the ONNX input itself is refused by the runtime with the expected shape.
    with pytest.raises(Exception, match="images"):
        extractor.session.run(["features"], {"images": np.zeros((1, 32, 32, 3), np.float32)})
