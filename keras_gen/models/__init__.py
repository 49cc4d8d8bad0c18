"""Generative models: subclassed keras.Models with their own train_step."""

from keras_gen.models.classifier import Classifier
from keras_gen.models.conditional_gan import ConditionalGAN
from keras_gen.models.conditional_vae import ConditionalVAE
from keras_gen.models.dcgan import DCGAN
from keras_gen.models.pixelcnn import PixelCNN
from keras_gen.models.vae import VAE
from keras_gen.models.wgan_gp import WGANGP

__all__ = [
    "DCGAN",
    "VAE",
    "WGANGP",
    "Classifier",
    "ConditionalGAN",
    "ConditionalVAE",
    "PixelCNN",
]
