"""keras_gen: generative models for Keras 3, with a zoo of trained presets.

import keras_gen
images = keras_gen.zoo.load("dcgan_faces").generate(64, seed=0)
"""

from keras_gen import data, evaluation, export, features, metrics, training, zoo
from keras_gen.models import (
    DCGAN,
    VAE,
    WGANGP,
    Classifier,
    ConditionalGAN,
    ConditionalVAE,
    PixelCNN,
)

__version__ = "0.1.0"

__all__ = [
    "DCGAN",
    "VAE",
    "WGANGP",
    "Classifier",
    "ConditionalGAN",
    "ConditionalVAE",
    "PixelCNN",
    "__version__",
    "data",
    "evaluation",
    "export",
    "features",
    "metrics",
    "training",
    "zoo",
]
