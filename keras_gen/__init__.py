"""keras_gen: generative models for Keras 3, with a zoo of trained presets."""

__version__ = "0.1.0"
