"""Fit a Gaussian mixture prior to a trained VAE preset's latents; write it as a preset.

Ex-post density estimation (Ghosh et al. 2020): the VAE's encoder and decoder stay
as trained, and EM fits a mixture to the posterior means of the training images,
prepared as the VAE's card says (MNIST binarized afresh every epoch, seeded, so
each EM iteration sees another draw of the same digits). The first epoch
initialises the mixture, each later one is an EM iteration. Generation then
decodes draws from the mixture.

    python tools/latent_mixture.py vae_mnist --data ../shared/data/mnist.npz \\
        --output zoo/vae_mnist_gmm --eval-every 3
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_gen import _files, cli, data, evaluation, training, zoo
from keras_gen._choices import EVAL_SAMPLES
from keras_gen._version import __version__
from keras_gen.models import MixturePriorVAE

SAMPLE_SEED = 0

LIMITATIONS = (
    "The mixture is fitted to posterior means, not to the aggregate posterior: "
    "latent dimensions {name} leaves unused (posteriors near N(0, 1), means near 0) "
    "get small prior variances, so its IWAE likelihood can come out worse than "
    "{name}'s even where its samples are better; the card's numbers say which "
    "happened. Its loss and score estimate the KL with one posterior sample. "
    "keras-gen train refuses it (its networks come from {name}): re-create it with "
    "its training command."
)


def nll_curve(
    every: int, data_spec: dict, splits, command: str, seed: int
) -> training.EpochCurve:
    """`keras-gen train --eval-every`'s point (the test NLL, on EVAL_SAMPLES test
    images) every `every` EM iterations: the card's training curve."""

    def measure(model):
        return training.curve_point(
            model, data_spec, splits, command, seed=seed, samples=EVAL_SAMPLES
        )

    return training.EpochCurve(every, measure, EVAL_SAMPLES, command)


def fitted(vae_preset: str, images, args, callbacks=()) -> MixturePriorVAE:
    """The preset's VAE with a mixture prior fitted by `args.epochs` epochs of EM."""
    card = zoo.card(vae_preset)
    model = MixturePriorVAE.from_vae(
        zoo.load(vae_preset), args.components, args.covariance
    )
    # EM applies no gradients; the optimizer counts the steps, as training's does.
    model.compile_from_config(card["training"]["compile"])
    batches = data.pipeline(
        images,
        batch_size=args.batch_size,
        shuffle=False,
        seed=args.seed,
        binarize="dynamic" if card["data"].get("binarize") else None,
    )
    model.fit(batches, epochs=args.epochs, verbose=2, callbacks=list(callbacks))
    return model


def preset_card(vae_card: dict, model, args, command: str, wall_time_s: float) -> dict:
    """The new preset's card: the VAE's data, the mixture's model and how it was fitted."""
    name, count = (
        args.preset,
        "all" if args.limit is None else f"the first {args.limit}",
    )
    config = {key: model.get_config()[key] for key in type(model).arguments()}
    history = model.history.history
    return {
        "description": (
            f"{name}'s encoder and decoder with a {args.components}-component, "
            f"{args.covariance}-covariance Gaussian mixture prior fitted by EM to the "
            f"posterior means of {count} training images (ex-post density "
            "estimation, Ghosh et al. 2020). Samples decode draws from the mixture."
        ),
        "intended_use": (
            f"Research and teaching: compare samples from {name}'s N(0, I) prior "
            "with those from a prior fitted to where its encoder puts the images."
        ),
        "limitations": LIMITATIONS.format(name=name),
        "model": {"class": type(model).__name__, "config": config},
        "data": vae_card["data"],
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "compile": vae_card["training"]["compile"],
        },
        "trained": _trained(model, args, command, wall_time_s),
        "metrics": [
            {
                "name": f"train {key} (last epoch)",
                "value": values[-1],
                "command": command,
            }
            for key, values in history.items()
        ],
    }


def _trained(model, args, command: str, wall_time_s: float) -> dict:
    output = Path(args.output)
    in_zoo = output.resolve().parent == zoo.root().resolve()
    shown = output.name if in_zoo else str(output)
    return {
        "command": command,
        "samples_command": (
            f"keras-gen sample {shown} -n 64 --seed {SAMPLE_SEED} -o samples.png"
        ),
        "epochs": args.epochs,
        "steps": training.step(model),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "replicas": 1,
        "wall_time_s": round(wall_time_s, 1),
        "hardware": evaluation.hardware(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_gen": __version__,
        "keras_gen_commit": training.source_revision(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def arguments(argv: list[str]) -> argparse.Namespace:
    """The command line's settings; --output defaults to zoo/PRESET_gmm."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="vae_mnist", help="a VAE preset")
    parser.add_argument("--data", help="dataset file or folder")
    parser.add_argument("--output", help="preset folder (default zoo/PRESET_gmm)")
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--covariance", choices=("full", "diagonal"), default="full")
    parser.add_argument("--epochs", type=int, default=31, help="1 initialises")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="keys the binarization")
    parser.add_argument("--limit", type=int, help="only the first N training images")
    parser.add_argument(
        "--eval-every",
        type=cli._integer(1),
        help="EM iterations between points of the training curve (test NLL)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a folder keras_gen did not write",
    )
    args = parser.parse_args(argv)
    try:  # refused before the slow fit: a curve with no point
        training.check_curve(args.eval_every, None, args.epochs)
    except ValueError as error:
        parser.error(str(error))
    args.output = args.output or str(zoo.root() / f"{Path(args.preset).name}_gmm")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = arguments(argv)
    # Refused now, before the slow fit, if keras_gen did not write it (zoo.write
    # checks again).
    _files.claim_folder(args.output, args.overwrite)
    start = time.monotonic()
    vae_card = zoo.card(args.preset)
    spec = vae_card["data"]
    splits = data.Splits(spec["dataset"], args.data)
    images = splits.images(spec["split"])
    command = shlex.join(["python", "tools/latent_mixture.py", *argv])
    curve = None
    if args.eval_every:
        curve = nll_curve(args.eval_every, spec, splits, command, args.seed)
    model = fitted(args.preset, images[: args.limit], args, [curve] if curve else [])
    card = preset_card(vae_card, model, args, command, time.monotonic() - start)
    figures = {}
    if curve:
        curve.add_to(card, figures)
    zoo.validate(card, "the new card")
    samples = model.generate(64, seed=SAMPLE_SEED)
    folder = zoo.write(args.output, model, card, samples, args.overwrite, figures)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
