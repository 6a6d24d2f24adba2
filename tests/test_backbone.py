import keras
import numpy as np
import pytest

from keras_mmga.models import backbone
from keras_mmga.models.backbone import build_resnet50_stages


@pytest.mark.parametrize(
    "shape, sizes",
    [((384, 128, 3), [(48, 16), (24, 8), (24, 8)]), ((128, 64, 3), [(16, 8), (8, 4), (8, 4)])],
)
def test_stage_shapes_have_last_stride_one(shape, sizes):
    stages = build_resnet50_stages(shape, weights=None)
    outs = [stages[k].output.shape for k in ("stem", "stage3", "stage4")]
    assert [tuple(o[1:3]) for o in outs] == sizes
    assert [o[-1] for o in outs] == [512, 1024, 2048]
    assert stages["stage4"].get_layer("conv5_block1_1_conv").strides == (1, 1)
    assert stages["stage4"].get_layer("conv5_block1_0_conv").strides == (1, 1)


def test_topology_matches_keras_resnet50():
    stages = build_resnet50_stages((64, 32, 3), weights=None)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 32, 3))
    ours = {
        layer.name: [w.shape for w in layer.weights] for m in stages.values() for layer in m.layers if layer.weights
    }
    theirs = {layer.name: [w.shape for w in layer.weights] for layer in reference.layers if layer.weights}
    assert ours == theirs
    # Same parameters, and stage 4 keeps its resolution instead of halving it.
    assert sum(m.count_params() for m in stages.values()) == reference.count_params()
    assert reference.output.shape[1:3] == (2, 1)


def test_weights_are_copied_from_a_file(tmp_path):
    keras.utils.set_random_seed(3)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 32, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    reference.save_weights(path)
    stages = build_resnet50_stages((64, 32, 3), weights=str(path))
    for name, model in (("conv1_conv", "stem"), ("conv4_block3_2_bn", "stage3"), ("conv5_block3_3_conv", "stage4")):
        for a, b in zip(stages[model].get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # With stride 1 in stage 4 the chained stages equal ResNet50 up to stage 3.
    x = np.random.RandomState(0).uniform(-100, 100, (2, 64, 32, 3)).astype("float32")
    stage3_ref = keras.Model(reference.input, reference.get_layer("conv4_block6_out").output)
    ours = stages["stage3"](stages["stem"](x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), stage3_ref.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        build_resnet50_stages((64, 32, 3), weights=str(tmp_path / "nothere.h5"))


def test_offline_imagenet_error_says_where_to_put_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(ConnectionError, match=backbone.WEIGHTS_FILE):
        build_resnet50_stages((64, 32, 3), weights="imagenet")
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ConnectionError, match="--backbone-weights none"):
        backbone.fetch_imagenet_weights()


def test_bad_input_shape():
    with pytest.raises(ValueError, match="divisible by 16"):
        build_resnet50_stages((100, 64, 3), weights=None)
