"""Print a diffusion preset's denoising error at each noise level, on test images.

The sampler's first steps trust the network's estimate of the clean image x_0 at
high noise. Where that estimate is worse than the mean test image (its error above
the last line's reference), early steps push every sample toward it: saturated
pixels, colour casts, noise that later steps keep. The table shows at which noise
levels a model has that problem. Rows are unconditioned (every head None).

    python tools/denoising_error.py ddim_faces --data ../shared/data/faces64.tar
"""

import argparse
import sys

import numpy as np
import tensorflow as tf

from keras_gen import data, zoo
from keras_gen.models import diffusion

TIMESTEPS = (999, 980, 950, 900, 800, 600, 400, 200, 50, 10)


def denoising_errors(model, images, timesteps, seed: int = 0) -> list[dict]:
    """Per timestep: the noise's and the clipped x_0 estimate's mean squared error.

    `images` in [0, 1]; errors are in the model's [-1, 1] scale, as the sampler
    sees them; `saturated` is the share of x_0 estimates outside [-1, 1].
    """
    clean = tf.constant(np.asarray(images, np.float32) * 2.0 - 1.0)
    unconditioned = {head: None for head in model.conditions or {}}
    rows = []
    for timestep in timesteps:
        alpha_bar = model.alphas_cumprod[timestep]
        noise = tf.random.stateless_normal(clean.shape, seed=[seed, timestep])
        noisy = diffusion.diffuse(clean, noise, alpha_bar)
        output = model.denoise(noisy, timestep, **unconditioned)
        noise_estimate, image = diffusion.noise_and_image(
            noisy, output, alpha_bar, model.prediction
        )
        rows.append(
            {
                "timestep": timestep,
                "signal": float(np.sqrt(alpha_bar)),
                "noise_mse": _mse(noise_estimate, noise),
                "image_mse": _mse(tf.clip_by_value(image, -1.0, 1.0), clean),
                "saturated": float(
                    tf.reduce_mean(tf.cast(abs(image) > 1.0, "float32"))
                ),
            }
        )
    return rows


def mean_image_mse(images) -> float:
    """The error of answering every image with the mean image, in the [-1, 1] scale."""
    clean = np.asarray(images, np.float64) * 2.0 - 1.0
    return float(np.mean((clean - clean.mean(axis=0)) ** 2))


def _mse(estimate, target) -> float:
    return float(tf.reduce_mean(tf.square(estimate - target)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--data", help="dataset file or folder")
    parser.add_argument("--images", type=int, default=128, help="test images used")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = zoo.load(args.preset)
    if not isinstance(model, diffusion.Diffusion):
        parser.error(f"{args.preset} is not a diffusion model")
    dataset = zoo.card(args.preset)["data"]["dataset"]
    test = data.load_images(dataset, "test", source=args.data)[: args.images] / 255.0
    print(f"{'t':>4} {'sqrt(alpha_bar)':>15} {'noise MSE':>10} {'x0 MSE':>8} saturated")
    for row in denoising_errors(model, test, TIMESTEPS, args.seed):
        print(
            f"{row['timestep']:>4} {row['signal']:>15.4f} {row['noise_mse']:>10.4f} "
            f"{row['image_mse']:>8.4f} {row['saturated']:>9.3f}"
        )
    print(f"x0 MSE of the mean test image (the reference): {mean_image_mse(test):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
