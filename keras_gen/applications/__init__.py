"""What generative models are used for, on any preset that can do it.

One module per application: `latent` (interpolation, attribute directions),
`anomaly` (likelihood scores, a thresholded detector), `inpainting` (filling in
missing pixels), `augmentation` (labelled synthetic data for training) and
`detection` (telling synthetic images from real ones). Private training lives
with training, in `keras_gen.privacy`. Each asks the model for the capability
it needs, so a preset without it gets a clear `base.CapabilityError`.
"""

from keras_gen.applications import anomaly, augmentation, detection, inpainting, latent

__all__ = ["anomaly", "augmentation", "detection", "inpainting", "latent"]
