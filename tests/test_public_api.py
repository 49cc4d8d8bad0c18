import keras_gen
from keras_gen.models import base


def test_public_surface_is_the_registered_families_and_these_modules():
    # The modules are a decision: change this tuple on purpose. Families become
    # public by registering (@base.family), and only then.
    modules = set(keras_gen.__all__) - set(base.FAMILIES) - {"__version__"}
    assert modules == {
        "applications",
        "data",
        "evaluation",
        "export",
        "features",
        "metrics",
        "privacy",
        "prompts",
        "training",
        "zoo",
    }
    assert "__version__" in keras_gen.__all__
    for name in base.FAMILIES:
        assert getattr(keras_gen, name) is base.FAMILIES[name]
        assert issubclass(base.FAMILIES[name], base.Family)
    assert {"DCGAN", "VAE", "PixelCNN", "Classifier"} <= set(base.FAMILIES)
