"""Write a VAE preset's latent traversal image and register it in its card.

Rows are the latent dimensions with the largest mean KL over test images (the ones
the model uses; with beta > 1 fewer carry information, each more disentangled);
columns move that one coordinate from -3 to 3 standard deviations while the others
stay at the posterior mean of one test image.

    python tools/latent_traversal.py vae_mnist --data ../shared/data/mnist.npz
"""

import argparse
import shlex
import sys

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_gen import _files, data, images, zoo

FILE = "traversal.png"


def traversal(
    model, test_images, rows: int = 8, columns: int = 9, image_index: int = 0
):
    """(rows * columns, H, W, C) decoded images and the dimensions shown, by KL rank."""
    posterior = model.encode(test_images)
    kl = tfp.distributions.kl_divergence(
        tfp.distributions.Normal(posterior.mean(), posterior.stddev()),
        tfp.distributions.Normal(0.0, 1.0),
    )
    dimensions = np.argsort(-np.mean(kl, axis=0))[:rows]
    start = np.asarray(posterior.mean())[image_index]
    latents = np.repeat(start[None], rows * columns, axis=0)
    for row, dimension in enumerate(dimensions):
        latents[row * columns : (row + 1) * columns, dimension] = np.linspace(
            -3, 3, columns
        )
    return model.decode(tf.constant(latents)), dimensions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--data", help="dataset file or folder")
    args = parser.parse_args(argv)
    card = zoo.card(args.preset)
    spec = card["data"]
    test = data.pipeline(
        data.load_images(spec["dataset"], "test", source=args.data)[:1000],
        batch_size=1000,
        shuffle=False,
        binarize="fixed" if spec.get("binarize") else None,
    )
    decoded, dimensions = traversal(zoo.load(args.preset), next(iter(test)))
    folder = zoo.path(args.preset)
    # The figure the card lists, in keras_gen's own preset folder: replace it.
    images.write_png(
        folder / FILE, decoded, columns=9, overwrite=_files.is_marked(folder)
    )
    command = shlex.join(["python", "tools/latent_traversal.py", *sys.argv[1:]])
    figure = {
        "file": FILE,
        "caption": (
            f"Latent traversal (beta = {card['model']['config'].get('beta', 1.0)}): "
            f"rows vary latent dimensions {', '.join(map(str, dimensions))} (largest "
            "mean KL first) from -3 to 3, the rest fixed at the posterior mean of the "
            "first test image."
        ),
        "command": command,
    }
    figures = [f for f in card.get("figures", []) if f["file"] != FILE]
    zoo.update_card(folder, {**card, "figures": [*figures, figure]})
    print(f"wrote {folder / FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
