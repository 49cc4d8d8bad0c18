"""keras_gen: generative models for Keras 3, with a zoo of trained presets.

import keras_gen
images = keras_gen.zoo.load("dcgan_faces").generate(64, seed=0)
"""

from keras_gen import _startup
from keras_gen._version import __version__

# The `keras-gen` command quiets TensorFlow's start-up here, where it first loads;
# imported as a library, keras_gen leaves TensorFlow's output alone.
with _startup.quiet_when_command():
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
