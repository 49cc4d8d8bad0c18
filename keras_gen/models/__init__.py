"""Generative models: subclassed keras.Models with their own train_step."""

from keras_gen.models.dcgan import DCGAN
from keras_gen.models.vae import VAE

__all__ = ["DCGAN", "VAE"]
