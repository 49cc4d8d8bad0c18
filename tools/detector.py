"""Train the real-vs-synthetic face detector, measure it, and write it as a preset.

Real UTKFace training faces (labelled real) against samples of dcgan_faces and
cvae_faces (labelled synthetic), JPEG-encoded as the real files are. Measured on
the real test faces against fresh samples (another seed) of those generators and
of wgan_gp_faces, which the detector never saw: leave one generator out.

    python tools/detector.py --data ../shared/data/faces64.tar --output zoo/detector_faces
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_gen import _files, cli, data, evaluation, training, zoo
from keras_gen._version import __version__
from keras_gen.applications import detection

SEEN = ("dcgan_faces", "cvae_faces")
UNSEEN = ("wgan_gp_faces",)
# Training samples come from seed 0, test samples from seed 1: no image is in both.
TRAIN_SAMPLES_SEED, TEST_SAMPLES_SEED = 0, 1
CURVE_METRIC = f"test ROC-AUC, real vs {UNSEEN[0]} samples (never seen in training)"

TERMS = (
    "UTKFace is provided for non-commercial research purposes only; image copyright "
    "stays with the original owners. The synthetic faces come from presets trained on "
    "the same faces. This model is released for the same non-commercial research "
    "purposes."
)
LIMITATIONS = (
    "It has seen one kind of real photo (UTKFace: aligned, tightly cropped 64x64 "
    "faces, JPEG quality 95) and two generators of this zoo ({seen}), all trained on "
    "those faces. The measured numbers hold for that setting only: other photo "
    "sources (a real photo framed or lit unlike UTKFace may well be called "
    "synthetic), other image sizes, and images resized, filtered, re-compressed or "
    "screenshotted after generation are not covered; nor are other kinds of "
    "generator (diffusion models, large GANs such as StyleGAN, face swaps, partly "
    "edited photos). The one check outside its training is {unseen}, another GAN "
    "trained on the same faces: it calls {called:.1%} of its samples synthetic "
    "(ROC-AUC {auc:.3f}, where 0.5 is chance){verdict}. Anyone who wants to evade it can "
    "(adversarial noise, or training a generator against it). Its probability is "
    "not calibrated evidence about an image or a person: do not use it to accuse "
    "anyone of faking content. keras-gen train cannot re-create it (half its data "
    "comes from other presets): re-create it with the command under Training."
)


def training_data(args) -> tuple:
    """(images, labels) of the training set: real faces and the seen generators' samples."""
    real = data.load_images("faces", "train", source=args.data)
    chosen = np.random.default_rng(args.seed).choice(
        len(real), args.real, replace=False
    )
    synthetic = {
        name: detection.synthetic_images(
            zoo.load(name), args.per_generator, TRAIN_SAMPLES_SEED
        )
        for name in SEEN
    }
    images, labels, _ = detection.training_set(real[chosen], synthetic, args.seed)
    return images, labels


def fitted(images, labels, args, callbacks=()):
    """A fresh detector trained `args.epochs` epochs on the training set."""
    keras.utils.set_random_seed(args.seed)
    model = detection.detector(images.shape[1:], tuple(args.filters), args.feature_dim)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    batches = data.pipeline(
        images, labels=labels, batch_size=args.batch_size, seed=args.seed
    )
    model.fit(batches, epochs=args.epochs, verbose=2, callbacks=list(callbacks))
    return model


def probabilities(model, pixels) -> np.ndarray:
    """P(synthetic) of 8-bit images."""
    return detection.synthetic_probability(model, pixels.astype("float32") / 255)


def auc_curve(every: int, real_test, unseen_test, command: str) -> training.EpochCurve:
    """The test ROC-AUC against the generator never seen in training, every `every`
    epochs: the card's training curve. Inference only, so training is unchanged."""

    def measure(model):
        real, unseen = (probabilities(model, x) for x in (real_test, unseen_test))
        return CURVE_METRIC, detection.scores(real, unseen)["roc_auc"]

    return training.EpochCurve(every, measure, len(unseen_test), command)


def measured(model, real_test, samples: int) -> list[dict]:
    """Card metrics: real test faces against fresh samples of every generator, as
    stored (JPEG) and, for comparison, as generated (8-bit PNG, no JPEG)."""
    real = probabilities(model, real_test)
    called_real = float(np.mean(real < 0.5))
    found = [
        {
            "name": "test real faces called real",
            "value": called_real,
            "samples": len(real),
        }
    ]
    names = {
        "accuracy": "test accuracy, real vs {}",
        "roc_auc": "test ROC-AUC, real vs {}",
        "synthetic_called_synthetic": "test {} called synthetic",
    }
    for name in SEEN + UNSEEN:
        seen = "seen in training" if name in SEEN else "never seen in training"
        raw = detection.synthetic_images(
            zoo.load(name), samples, TEST_SAMPLES_SEED, stored=False
        )
        for stored in (True, False):
            synthetic = detection.as_stored(raw / 255.0) if stored else raw
            scores = detection.scores(real, probabilities(model, synthetic))
            keys = list(names) if stored else ["roc_auc"]
            what = f"{name} samples" + ("" if stored else " as PNG, no JPEG")
            found += [
                {"name": f"{names[key].format(what)} ({seen})", "value": scores[key]}
                for key in keys
            ]
    return [{"samples": samples, **metric} for metric in found]


def preset_card(model, args, command: str, wall_time_s: float, metrics) -> dict:
    """The detector's card: its data, how it was made, what it measured."""
    config = {key: model.get_config()[key] for key in type(model).arguments()}
    seen, unseen = " and ".join(SEEN), " and ".join(UNSEEN)
    history = model.history.history
    return {
        "description": (
            "Tells real 64x64 face photos from synthetic ones: P(synthetic) per "
            f"image, from a small CNN trained on UTKFace faces against samples of "
            f"{seen}. Measured on a generator it never saw too ({unseen})."
        ),
        "intended_use": (
            "Research and teaching: how well a small classifier separates this "
            "zoo's generated faces from real ones, and how that carries over to a "
            "generator left out of training. Not a deepfake detector for real-world "
            "use, and not evidence about any person or image."
        ),
        "usage": (
            "p = model.probabilities(images)['source'][:, 1]  # P(synthetic); or "
            "keras-gen detect detector_faces photo.jpg"
        ),
        "limitations": limitations(metrics),
        "model": {"class": type(model).__name__, "config": config},
        "data": {
            "dataset": "faces",
            "split": "train",
            "description": (
                f"{args.real:,} UTKFace training faces (Zhang, Song and Qi, CVPR 2017; "
                "64x64 RGB JPEG from faces64.tar, drawn with the training seed) "
                f"labelled real, and {args.per_generator:,} samples each of {seen} "
                f"(seed {TRAIN_SAMPLES_SEED}, classes cycled for cvae_faces) labelled "
                "synthetic, each made 8-bit and JPEG-encoded at quality "
                f"{detection.JPEG_QUALITY}, 4:4:4, as the real files are. UTKFace's "
                "age and gender labels are not used. `generators` names the "
                "weights (sha256) of every generator trained on or measured."
            ),
            "generators": generator_weights(),
            "terms": TERMS,
        },
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "compile": model.get_compile_config(),
            "made_by": "python tools/detector.py",
        },
        "trained": _trained(model, args, command, wall_time_s),
        "metrics": [
            {
                "name": f"train {key} (last epoch)",
                "value": values[-1],
                "command": command,
            }
            for key, values in history.items()
        ]
        + metrics,
    }


def generator_weights() -> dict[str, str]:
    """The sha256 of each generator's weights: the detector's numbers hold for
    these samples, and a retrained generator gives others."""
    return {
        name: zoo.card(name)["weights"][zoo.WEIGHTS]["sha256"] for name in SEEN + UNSEEN
    }


def limitations(metrics: list[dict]) -> str:
    """LIMITATIONS with what the left-out generator's numbers say."""
    (unseen,) = UNSEEN
    value = {metric["name"]: metric["value"] for metric in metrics}
    called = value[f"test {unseen} samples called synthetic (never seen in training)"]
    auc = value[f"test ROC-AUC, real vs {unseen} samples (never seen in training)"]
    # An AUC this low means the detector learnt its generators' traces, not what
    # makes a face synthetic.
    verdict = (
        ", so it does not carry over to a generator it never saw" if auc < 0.75 else ""
    )
    return LIMITATIONS.format(
        seen=" and ".join(SEEN), unseen=unseen, called=called, auc=auc, verdict=verdict
    )


def curve_limitation(points: list[dict]) -> str:
    """What the training curve says of the left-out generator."""
    values = ", ".join(f"{point['value']:.3f}" for point in points)
    epochs = ", ".join(str(point["epoch"]) for point in points)
    found = (
        "it stays near chance, so more epochs would not make it generalise"
        if max(point["value"] for point in points) < 0.75
        else "see the curve for whether more epochs would help"
    )
    return (
        f"Its training curve (the ROC-AUC against {UNSEEN[0]} after epochs {epochs}: "
        f"{values}): {found}."
    )


def _trained(model, args, command: str, wall_time_s: float) -> dict:
    return {
        "command": command,
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


def _curve(
    every: int | None, real_test, samples: int, command: str
) -> training.EpochCurve | None:
    """The training curve's callback, with its test samples of the unseen generator."""
    if every is None:
        return None
    (unseen,) = UNSEEN
    unseen_test = detection.synthetic_images(
        zoo.load(unseen), samples, TEST_SAMPLES_SEED
    )
    # All the real test faces, as `measured` scores.
    return auc_curve(every, real_test, unseen_test, command)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", help="faces tar or folder (default: the usual places)"
    )
    parser.add_argument("--output", default=str(zoo.root() / "detector_faces"))
    parser.add_argument("--real", type=int, default=6000, help="real training faces")
    parser.add_argument(
        "--per-generator", type=int, default=3000, help="samples of each seen generator"
    )
    parser.add_argument(
        "--test-samples", type=int, help="per generator (default: as many as real)"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 64, 64])
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-every",
        type=cli._integer(1),
        help=f"epochs between points of the training curve ({CURVE_METRIC})",
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:  # refused before the slow fit: a curve with no point
        training.check_curve(args.eval_every, None, args.epochs)
    except ValueError as error:
        parser.error(str(error))
    # Refused now, before the slow work, if keras_gen did not write it.
    _files.claim_folder(args.output, args.overwrite)
    start = time.monotonic()
    real_test = data.load_images("faces", "test", source=args.data)
    samples = args.test_samples or len(real_test)
    command = shlex.join(["python", "tools/detector.py", *argv])
    curve = _curve(args.eval_every, real_test, samples, command)
    model = fitted(*training_data(args), args, [curve] if curve else [])
    metrics = [
        {**metric, "command": command} for metric in measured(model, real_test, samples)
    ]
    for metric in metrics:
        print(f"{metric['name']:70} {metric['value']:.4f}")
    card = preset_card(model, args, command, time.monotonic() - start, metrics)
    figures = {}
    if curve:
        curve.add_to(card, figures)
        card["limitations"] += " " + curve_limitation(curve.points)
    zoo.validate(card, "the new card")
    folder = zoo.write(Path(args.output), model, card, None, args.overwrite, figures)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
