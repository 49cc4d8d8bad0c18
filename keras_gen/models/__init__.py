"""Generative models: subclassed keras.Models with their own train_step."""

from keras_gen.models.dcgan import DCGAN

__all__ = ["DCGAN"]
