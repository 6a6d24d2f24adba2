import keras
import numpy as np
import pytest
import tensorflow as tf
from factories import random_images

from keras_mmga.evaluation.features import extract_features


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Flatten()(x)  # position-sensitive: a flip changes the feature
    x = keras.layers.Dense(5)(x)
    return keras.Model(inputs, keras.layers.UnitNormalization()(x))


def _images(n=7, seed=0):
    return random_images(n, (16, 8, 3), seed)


def test_flip_average_equals_manual_mean_and_plain_pass():
    model = _model()
    images = _images()
    plain = model.predict(images, verbose=0)
    flipped = model.predict(images[:, :, ::-1], verbose=0)
    assert np.abs(plain - flipped).max() > 1e-2  # the flip matters for this model
    expected = plain + flipped
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = extract_features(model, images, flip=True, verbose=False, batch_size=3)
    assert got.dtype == np.float32 and got.shape == (7, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(extract_features(model, images, flip=False, verbose=False), plain, atol=1e-5)


def test_dataset_of_tuples_and_progress_bar(capsys):
    model = _model()
    images = _images()
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(7))).batch(4)
    got = extract_features(model, ds, verbose=True)
    np.testing.assert_allclose(got, extract_features(model, images, verbose=False), atol=1e-5)
    # Progress on stderr, counted in images (the count of a dataset is known at its end).
    assert "features: 7 images" in capsys.readouterr().err
    extract_features(model, ds, verbose=True, label="query features", num_images=7)
    assert "query features: 7/7 images" in capsys.readouterr().err
    extract_features(model, images, verbose=True, label="gallery features", batch_size=3)
    assert "gallery features: 7/7 images" in capsys.readouterr().err


def test_symmetric_image_feature_equals_its_flip():
    model = _model()
    half = np.random.RandomState(1).uniform(0, 255, (1, 16, 4, 3)).astype("float32")
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    np.testing.assert_allclose(
        extract_features(model, symmetric, verbose=False), model.predict(symmetric, verbose=0), atol=1e-5
    )
    # And any image and its mirror image get the same flip-averaged feature.
    image = _images(1, seed=2)
    np.testing.assert_allclose(
        extract_features(model, image, verbose=False),
        extract_features(model, image[:, :, ::-1].copy(), verbose=False),
        atol=1e-5,
    )


def test_errors():
    model = _model()
    with pytest.raises(ValueError, match="no images"):
        extract_features(model, [], verbose=False)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        extract_features(model, np.zeros((16, 8, 3), "float32"), verbose=False)
