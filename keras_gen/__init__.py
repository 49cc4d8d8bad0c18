"""keras_gen: generative models for Keras 3, with a zoo of trained presets.

import keras_gen
images = keras_gen.zoo.load("dcgan_faces").generate(64, seed=0)
"""

from keras_gen import _startup
from keras_gen._version import __version__

# Imported as a library, keras_gen loads every module, which registers every family
# (Keras needs that to load a saved one). The `keras-gen` command loads only what
# its command needs, once its flags are read (keras_gen.cli), so --help and a
# mistyped flag are answered before TensorFlow loads.
if not _startup.running_as_command():
    from keras_gen import (
        applications,
        data,
        evaluation,
        export,
        features,
        metrics,
        models,
        privacy,
        prompts,
        training,
        zoo,
    )

    # The public surface: these modules, and every model family registered with
    # @models.base.family (registering is what makes a family public); nothing else.
    __all__ = ["__version__", "applications", "data", "evaluation", "export"]
    __all__ += ["features", "metrics", "privacy", "prompts", "training", "zoo"]
    __all__ += models.__all__
    globals().update({name: getattr(models, name) for name in models.__all__})
