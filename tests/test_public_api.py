import keras_gen


def test_public_surface_is_a_decision():
    # Growing the public API is a choice: change this list on purpose.
    assert sorted(keras_gen.__all__) == [
        "Classifier",
        "ConditionalGAN",
        "ConditionalVAE",
        "DCGAN",
        "PixelCNN",
        "VAE",
        "WGANGP",
        "__version__",
        "data",
        "evaluation",
        "export",
        "features",
        "metrics",
        "training",
        "zoo",
    ]
    for name in keras_gen.__all__:
        assert hasattr(keras_gen, name)
