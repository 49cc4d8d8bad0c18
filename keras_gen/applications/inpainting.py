"""Filling in missing pixels with a generative model, and the baseline it must beat.

Each family that can fill pixels in declares `base.INPAINTING` and its own
`inpaint(images, missing, seed)`: a VAE by Metropolis-within-Gibbs, PixelCNN by
drawing the missing pixels in raster order. This module checks the request once
for all of them and holds the masks and the mean-value baseline.
"""

import numpy as np
import tensorflow as tf

from keras_gen.models import base


def inpaint(model: base.Family, images, missing, seed: int = 0) -> tf.Tensor:
    """`images` in [0, 1] with their `missing` pixels (1 or True = missing) filled in.

    Observed pixels come back unchanged. Example:
        filled = inpaint(zoo.load("vae_mnist"), digits, bottom_half(digits.shape))
    """
    model.require(base.INPAINTING, "fill in missing pixels")
    images = np.asarray(images, np.float32)
    missing = np.asarray(missing)
    if missing.shape != images.shape:
        raise ValueError(
            f"the mask must have the images' shape {images.shape} (1 where a pixel "
            f"is missing), got {missing.shape}"
        )
    return model.inpaint(images, missing.astype(np.float32), seed=seed)


def bottom_half(shape: tuple) -> np.ndarray:
    """A mask (1 = missing) hiding the bottom half of every image of `shape`."""
    mask = np.zeros(shape, np.float32)
    mask[:, shape[1] // 2 :] = 1.0
    return mask


def mean_filled(images, missing, mean_image) -> np.ndarray:
    """The baseline: each missing pixel replaced by its mean over training images."""
    images = np.asarray(images, np.float32)
    missing = np.asarray(missing, np.float32)
    return images * (1 - missing) + np.asarray(mean_image, np.float32) * missing


def filled_psnr(filled, targets, missing) -> np.ndarray:
    """PSNR in dB of each image's filled region alone against the true pixels."""
    missing = np.asarray(missing, np.float64)
    error = (np.asarray(filled, np.float64) - np.asarray(targets, np.float64)) ** 2
    mse = (error * missing).sum(axis=(1, 2, 3)) / missing.sum(axis=(1, 2, 3))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))
