import keras
import numpy as np

from keras_mmga.evaluation.features import extract_features


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.Flatten()(x)  # position-sensitive: a flip changes the feature
    x = keras.layers.Dense(5)(x)
    return keras.Model(inputs, keras.layers.UnitNormalization()(x))


def test_flip_average_equals_manual_mean_and_plain_pass():
    model = _model()
    images = np.random.RandomState(0).uniform(0, 255, (7, 16, 8, 3)).astype("float32")
    plain = model.predict(images, verbose=0)
    flipped = model.predict(images[:, :, ::-1], verbose=0)
    expected = plain + flipped
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(extract_features(model, images, flip=True, verbose=False), expected, atol=1e-5)
    np.testing.assert_allclose(extract_features(model, images, flip=False, verbose=False), plain, atol=1e-5)


def test_symmetric_image_feature_equals_its_flip():
    model = _model()
    half = np.random.RandomState(1).uniform(0, 255, (1, 16, 4, 3)).astype("float32")
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    np.testing.assert_allclose(
        extract_features(model, symmetric, verbose=False), model.predict(symmetric, verbose=0), atol=1e-5
    )
