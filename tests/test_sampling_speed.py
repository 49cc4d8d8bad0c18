"""What makes sampling fast, checked for correctness (never for speed):

- `generate` and `decode` of latent families run a compiled function per model,
  traced once per input signature: new batch sizes, seeds or conditions do not
  retrace, and the images equal the uncompiled network's;
- the Gaussian mixtures' draws (GaussianMixture, MixturePriorVAE's prior) and
  GaussianMixture's scores run one compiled function too, equal to eager TFP's;
- TFLite files hold no TRANSPOSE_CONV: `export._phase_convolutions` computes what
  Keras's Conv2DTranspose does with ops LiteRT's XNNPACK kernels run at any batch size.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_gen import export
from keras_gen.models import base, noise

LATENT = [
    name
    for name, family in tiny.FAMILIES.items()
    if isinstance(family.make(), base.LatentFamily)
]


def _conditions(model, rows: int) -> dict:
    """One class index per row for every head of a conditional model, else nothing."""
    if not model.can(base.CONDITIONS):
        return {}
    labels = tiny.labels_for(model.conditions, rows)
    return {head: labels[:, i] for i, head in enumerate(model.conditions)}


def _labels(model, conditions: dict, rows: int):
    return model._labels(conditions, rows) if conditions else None


@pytest.mark.parametrize("name", LATENT)
def test_decode_is_compiled_once_and_equals_the_eager_network(name):
    model = tiny.FAMILIES[name].make()
    rng = np.random.default_rng(0)
    for rows in (1, 2, 3, 5, 8):
        latents = rng.standard_normal((rows, model.latent_dim)).astype("float32")
        conditions = _conditions(model, rows)
        found = model.decode(latents, **conditions)
        expected = model._decode(tf.constant(latents), _labels(model, conditions, rows))
        np.testing.assert_allclose(found, expected, atol=1e-5, rtol=0)
    compiled = model._compiled("_decode")
    # The first batch size and the relaxed free batch size: never one per call.
    assert 1 <= compiled.experimental_get_tracing_count() <= 2
    model.decode(latents[:4], **_conditions(model, 4))
    assert compiled.experimental_get_tracing_count() <= 2


@pytest.mark.parametrize("name", LATENT)
def test_generate_is_compiled_and_gives_the_images_of_its_seed(name):
    model = tiny.FAMILIES[name].make()
    images = np.asarray(model.generate(4, seed=3))
    if not hasattr(model, "mixture"):  # N(0, I) latents: drawn here as generate does
        latents = noise.standard_normal(4, model.latent_dim, 3)
        labels = model._labels({}, 4, cycle=True)
        np.testing.assert_allclose(
            images, model._decode(latents, labels), atol=1e-5, rtol=0
        )
    traces = model._compiled("_decode").experimental_get_tracing_count()
    assert traces >= 1  # generate went through the compiled function
    # Tensors or Python numbers, other seeds, fresh noise, other sizes: no retrace.
    same = model.generate(tf.constant(4), seed=tf.constant(3, tf.int64))
    np.testing.assert_array_equal(images, same)
    assert not np.array_equal(images, model.generate(4, seed=4))
    first, second = model.generate(2), model.generate(2)
    assert not np.array_equal(first, second)
    model.generate(7, seed=1)
    assert model._compiled("_decode").experimental_get_tracing_count() <= max(traces, 2)


@pytest.mark.parametrize("name", ["GaussianMixture", "MixturePriorVAE"])
def test_mixture_draws_are_compiled_and_those_of_their_seed(name):
    model = tiny.FAMILIES[name].make()
    found = model._mixture_draws(5, 3)
    np.testing.assert_array_equal(found, model.mixture.sample(5, 3))  # eager TFP
    draw = model._compiled("_draw")
    traces = draw.experimental_get_tracing_count()
    assert traces == 1
    # Other sizes and seeds, Python numbers or tensors: the same trace.
    model._mixture_draws(7, 4)
    model._mixture_draws(tf.constant(2), tf.constant(9, tf.int64))
    assert draw.experimental_get_tracing_count() == traces
    assert not np.array_equal(
        model._mixture_draws(5, None), model._mixture_draws(5, None)
    )


def test_gaussian_mixture_scores_through_one_compiled_function():
    model = tiny.FAMILIES["GaussianMixture"].make()
    images = tiny.binary_images(model, 300)  # more than one batch of 256
    found = model.negative_log_likelihood(images)
    expected = model._negative_log_likelihood(tf.constant(images))
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    score = model._compiled("_negative_log_likelihood")
    assert 1 <= score.experimental_get_tracing_count() <= 2
    model.negative_log_likelihood(images[:5])
    assert score.experimental_get_tracing_count() <= 2


def test_compiled_functions_are_not_saved_with_the_model(tmp_path):
    """The cache lives outside what Keras and SavedModels track: a model that has
    sampled saves, reloads and exports as one that has not."""
    model = tiny.dcgan()
    model.generate(2, seed=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        reloaded.generate(2, seed=0), model.generate(2, seed=0), atol=1e-6
    )
    saved = export.saved_model(model, tmp_path / "saved")
    loaded = tf.saved_model.load(str(saved))
    assert not any("compiled" in name for name in dir(loaded))


def _transposed(kernel, strides, filters, bias=True):
    layer = keras.layers.Conv2DTranspose(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=bias,
        bias_initializer="random_normal",
        activation="tanh",
    )
    layer.build((None, None, None, 5))
    return layer


@pytest.mark.parametrize("kernel", [2, 3, 4, 5, (4, 3)])
@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("filters", [3, export.NARROW_OUTPUT + 1])
def test_phase_convolutions_compute_what_conv2d_transpose_does(
    kernel, strides, filters
):
    """Each phase form (narrow outputs as one merged convolution, wide ones one
    convolution per phase) against Keras, on square and oblong inputs."""
    layer = _transposed(kernel, strides, filters)
    if min(np.atleast_1d(kernel)) < strides:
        assert export._phase_taps(layer) is None  # left to TRANSPOSE_CONV
        return
    for size in ((4, 4), (3, 5)):
        images = np.random.default_rng(0).standard_normal((2, *size, 5))
        images = tf.constant(images, tf.float32)
        found = export._phase_call(layer)(images)
        np.testing.assert_allclose(found, layer(images), atol=1e-5, rtol=0)


def test_tflite_files_have_no_transposed_convolution_and_keras_keeps_its_own(
    tmp_path,
):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny.dcgan()
    path = export.tflite(model, tmp_path)
    interpreter = Interpreter(model_path=str(path))
    interpreter.get_signature_runner("generate")(
        latents=np.zeros((2, model.latent_dim), np.float32)
    )
    operators = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TRANSPOSE_CONV" not in operators
    assert {"CONV_2D", "DEPTH_TO_SPACE"} <= operators
    # The lowering lasted only while the export traced.
    transposed = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Conv2DTranspose)
    ]
    assert transposed and not any("call" in vars(layer) for layer in transposed)
