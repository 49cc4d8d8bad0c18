"""The keras-gen command: a thin layer over keras_gen's Python API.

A user's mistake ends the command with one line on stderr and exit code 2, never
a traceback: flags are checked when parsed, everything else where it enters the
API. Commands that run a model first say on stderr which device runs them.
TensorFlow's own logs stay hidden unless -v/--verbose; long work shows progress
on a terminal unless -q/--quiet.
"""

import argparse
import inspect
import itertools
import json
import math
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_gen import (
    _files,
    _startup,
    data,
    evaluation,
    export,
    images,
    progress,
    prompts,
    training,
    zoo,
)
from keras_gen.applications import detection, latent
from keras_gen.models import base, conditioning

INT64_MAX = 2**63 - 1
# keras.utils.set_random_seed seeds NumPy too, which takes 32-bit seeds only.
TRAIN_SEED_MAX = 2**32 - 1
# Generated images are held in memory and tiled into one PNG: 1024 64x64 faces
# make a 2,200x2,200 grid. The exported `sample` signature has the same bound.
MAX_SAMPLE = 1024
MAX_EVALUATE = 50_000  # the customary FID sample count


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, without the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer(low: int, high: int = INT64_MAX):
    """An argparse type: an integer from `low` to `high`, with a message saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if high < INT64_MAX and not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low} to {high}, got {value}"
            )
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must fit in int64, got {value}")
        return value

    return parse


def _parts(text: str) -> frozenset:
    """An argparse type: comma-separated evaluation parts (zoo.EVALUATION_PARTS)."""
    named = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return evaluation.checked_parts(named)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("measure: ")) from None


def _finite_number(text: str) -> float:
    """An argparse type: a finite float, with a message saying so."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _preset(parser, what="preset name (shipped preset) or ./path of a preset folder"):
    parser.add_argument("preset", help=what)


def _overwrite(parser):
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output even if keras_gen did not write it",
    )


def _update_card(parser, what):
    parser.add_argument("--update-card", action="store_true", help=what)


def _command_list(args, argv):
    for name in zoo.list():
        print(f"{name:20} {zoo.card(name).get('description', '')}")


def _command_info(args, argv):
    print(json.dumps(zoo.card(args.preset), indent=2))


def _command_sample(args, argv):
    _files.claim_file(args.output, images.png_signed, args.overwrite)
    model = _generative(args.preset)
    options = _sampling_options(args, model)
    for flag, value in (("--prompt", args.prompt), ("--per-class", args.per_class)):
        if value is not None and not model.can(base.CONDITIONS):
            raise ValueError(f"{args.preset} is not a conditional model; drop {flag}")
    if model.can(base.TRANSLATION):
        _write_translations(model, args)
        return
    conditions = {}
    if args.prompt is not None:
        conditions = _prompted_conditions(args.prompt, model)
    count, columns = args.num_samples, None
    if args.per_class is not None:  # -n per class, a row each
        head = args.per_class or None
        conditions, count = conditioning.per_class(
            model.conditions, head, args.num_samples, conditions
        )
        columns = args.num_samples
        if count > MAX_SAMPLE:
            raise ValueError(
                f"{count} samples ({args.num_samples} per class); at most "
                f"{MAX_SAMPLE}: lower -n"
            )
    generated = model.generate(count, seed=args.seed, **options, **conditions)
    images.write_png(args.output, generated, columns, overwrite=args.overwrite)
    print(f"wrote {count} samples of {args.preset} to {args.output}")


def _generate_options(model_class: type) -> set[str]:
    """The keyword arguments a family's `generate` declares beside num_samples, seed
    and conditions: a diffusion model's steps, guidance, sampler and eta."""
    parameters = inspect.signature(model_class.generate).parameters.values()
    return {
        p.name
        for p in parameters
        if p.kind == p.POSITIONAL_OR_KEYWORD
        and p.name not in ("self", "num_samples", "seed")
    }


def _sampling_options(args, model) -> dict:
    """--steps and --guidance as generate's arguments, refused where it takes none."""
    given = {
        name: value
        for name in ("steps", "guidance")
        if (value := getattr(args, name, None)) is not None
    }
    taken = _generate_options(type(model))
    refused = [f"--{name}" for name in given if name not in taken]
    if refused:
        takers = [
            name
            for name in zoo.list()
            if "steps" in _generate_options(zoo.model_class(zoo.card(name)))
        ]
        raise ValueError(
            f"{args.preset} is a {type(model).__name__}, which takes no "
            f"{' or '.join(refused)}; those are for diffusion presets: "
            f"{', '.join(takers) or '(none)'}"
        )
    return given


def _prompted_conditions(prompt: str, model) -> dict:
    """The conditions a --prompt names (keras_gen.prompts).

    A model with guidance has an unconditioned class per head: the heads the
    prompt leaves out are unconditioned, and words it does not understand are
    reported on stderr and left out. Other models need every word understood.
    """
    found, not_understood = prompts.parse(prompt, model.conditions)
    if "guidance" in _generate_options(type(model)):
        if not_understood:
            print(
                f"keras-gen sample: not understood, left out: {' '.join(not_understood)}",
                file=sys.stderr,
            )
        return {head: found.get(head) for head in model.conditions}
    if not_understood or not found:
        words = " ".join(not_understood)
        left = f" (not understood: {words})" if not_understood else ""
        choices = "; ".join(f"{h}: {', '.join(n)}" for h, n in model.conditions.items())
        raise ValueError(
            f"cannot read the prompt {prompt!r}{left}. Name a class of {choices}"
        )
    return found


def _command_interpolate(args, argv):
    if len(args.seeds) < 2:
        raise ValueError("--seeds needs at least two seeds to interpolate between")
    signed = images.gif_signed if args.gif else images.png_signed
    _files.claim_file(args.output, signed, args.overwrite)
    model = zoo.load(args.preset)
    conditions = {}
    if args.prompt is not None:
        model.require(base.CONDITIONS, "take --prompt")
        conditions = _prompted_conditions(args.prompt, model)
    # The GIF loops: through every seed, then back to the first.
    seeds = [*args.seeds, args.seeds[0]] if args.gif else args.seeds
    strips = [
        np.asarray(
            latent.interpolate(model, a, b, args.steps, args.method, **conditions)
        )
        for a, b in itertools.pairwise(seeds)
    ]
    if args.gif:
        frames = np.concatenate([strip[:-1] for strip in strips])  # no repeated frame
        images.write_gif(args.output, frames, overwrite=args.overwrite)
    else:
        grid = np.concatenate(strips)
        images.write_png(
            args.output, grid, columns=args.steps, overwrite=args.overwrite
        )
    print(f"wrote {len(strips)} interpolation(s) of {args.preset} to {args.output}")


def _generative(preset):
    """The preset's model, or a ValueError saying it neither generates nor translates."""
    model = zoo.load(preset)
    if not (model.can(base.SAMPLES) or model.can(base.TRANSLATION)):
        raise ValueError(
            f"{preset} is a {type(model).__name__}, which does not generate images; "
            f"sample a generative preset: {', '.join(_presets(base.SAMPLES))}; or "
            f"an image-to-image one: {', '.join(_presets(base.TRANSLATION))}"
        )
    return model


def _presets(capability: str) -> list[str]:
    """The shipped presets whose model class declares `capability`."""
    return [
        name
        for name in zoo.list()
        if capability in zoo.model_class(zoo.card(name)).capabilities
    ]


def _write_translations(model, args):
    """Input / output / target rows of -n test images, chosen by --seed."""
    dataset = zoo.card(args.preset)["data"]["dataset"]
    kind = _paired_kind(args.preset, dataset)
    targets = data.load_images(dataset, "test", source=args.data)
    rows = evaluation.translation_examples(
        model, targets, kind, args.num_samples, args.seed
    )
    shown, columns = images.side_by_side(*rows)
    images.write_png(args.output, shown, columns=columns, overwrite=args.overwrite)
    print(
        f"wrote input / output / target rows of {len(rows[0])} test images of "
        f"{args.preset} to {args.output}"
    )


def _paired_kind(preset, dataset: str) -> str:
    """How the preset's inputs are made from images, or a ValueError if they are not."""
    kind = data.input_kind(dataset)
    if kind is None:
        raise ValueError(
            f"{preset} was trained on {dataset}, which is not a paired dataset, so "
            "keras_gen cannot make its inputs from a photo; pass inputs made for it "
            "(keras-gen translate --input-is-prepared)"
        )
    return kind


def _command_translate(args, argv):
    _files.claim_file(args.output, images.png_signed, args.overwrite)
    model = _translator(args.preset)
    dataset = zoo.card(args.preset)["data"]["dataset"]
    batch = np.concatenate(
        [
            _model_input(model, args.preset, dataset, path, args.input_is_prepared)
            for path in args.inputs
        ]
    )
    translated = np.asarray(model.translate(batch))
    shown, columns = images.side_by_side(
        *([batch, translated] if args.show_inputs else [translated])
    )
    # One image is written as itself; several as a grid, in the order given.
    padding = 0 if len(shown) == 1 else 2
    images.write_png(args.output, shown, columns, args.overwrite, padding)
    count = f"{len(batch)} translation{'s' if len(batch) > 1 else ''}"
    print(f"wrote {count} by {args.preset} to {args.output}")


def _translator(preset):
    """The preset's model, or a ValueError naming the presets that translate."""
    if base.TRANSLATION not in zoo.model_class(zoo.card(preset)).capabilities:
        raise ValueError(
            f"{preset} is a {zoo.card(preset)['model']['class']}, which does not "
            "translate images; use an image-to-image preset: "
            f"{', '.join(_presets(base.TRANSLATION)) or '(none)'}"
        )
    return zoo.load(preset)


def _model_input(model, preset, dataset: str, path: str, prepared: bool):
    """A user's image file as one input of the model, (1, *input_image_shape).

    A photo is centre-cropped and resized as the preset's data were, then made
    into an input as its training inputs were (`data.paired`). A prepared input
    (a sketch, a small photo) is only resized to the input's size, and reduced
    to its luma if the model reads one channel.
    """
    file = Path(path)
    if not file.exists() or not file.is_file():
        state = "does not exist" if not file.exists() else "is not a regular file"
        raise ValueError(f"{path} {state}; pass image files (PNG, JPEG, GIF or BMP)")
    blob = file.read_bytes()
    if not prepared:
        kind = _paired_kind(preset, dataset)
        photo = images.decode_images([path], [blob], model.image_shape[0])
        return np.asarray(data.paired(kind, photo))
    height, _, channels = model.input_image_shape
    pixels = images.decode_images([path], [blob], height).astype(np.float32) / 255.0
    return np.asarray(data.luminance(pixels)) if channels == 1 else pixels


def _command_evaluate(args, argv):
    if args.json:
        _files.claim_file(args.json, _files.json_signed, args.overwrite)
    command = shlex.join(["keras-gen", *argv])
    model, card = zoo.load(args.preset), zoo.card(args.preset)
    if args.guidance is not None:
        _measured_at_guidance(args, model)
    spec = card["data"]
    splits = data.Splits(spec["dataset"], args.data)
    report = evaluation.evaluate(
        model,
        spec,
        command,
        num_samples=args.num_samples,
        class_samples=args.class_samples,
        seed=args.seed,
        feature_extractor=args.features,
        reference=args.reference,
        splits=splits,
        trained=card.get("trained"),
        measure=args.measure,
    )
    report = {"written_by": "keras_gen", "preset": str(args.preset), **report}
    if args.guidance is not None:
        report["guidance"] = args.guidance
    _print_report(report)
    if args.json:
        text = json.dumps(report, indent=2) + "\n"
        _files.write_text(args.json, text, _files.json_signed, args.overwrite)
        print(f"wrote {args.json}")
    if args.update_card:
        zoo.record_metrics(args.preset, report["metrics"], command)
        if model.can(base.TRANSLATION):
            _record_translation_figure(args.preset, model, spec, splits)
        if drawn := zoo.steps_tradeoff_figure(zoo.card(args.preset)):
            zoo.record_figure(args.preset, drawn[0], *drawn[1])


def _measured_at_guidance(args, model) -> None:
    """evaluate --guidance: sample at another scale than the preset's own, to choose
    one; a card holds the numbers of its own scale only."""
    _sampling_options(args, model)  # refuses a model that takes no guidance
    if not model.conditions:
        raise ValueError(f"{args.preset} is unconditional: it has no guidance to set")
    if args.update_card and args.guidance != model.guidance:
        raise ValueError(
            f"--guidance {args.guidance:g} with --update-card: the card holds the "
            f"numbers of the preset's own scale, {model.guidance:g}; measure without "
            "--update-card, or set model.config.guidance in the card and measure "
            "every part again"
        )
    model.guidance = args.guidance


def _record_translation_figure(preset, model, spec, splits):
    """The card's input / output / target figure of an image-to-image preset."""
    kind = _paired_kind(preset, spec["dataset"])
    shown, columns = evaluation.translation_figure(model, splits.images("test"), kind)
    entry = evaluation.figure_entry(str(preset), kind, splits.source)
    zoo.record_figure(preset, entry, shown, columns)
    print(f"wrote {entry['file']} into {zoo.path(preset)}")


def _print_report(report):
    if "guidance" in report:
        print(f"guidance: {report['guidance']:g}")
    if "extractor" in report:
        extractor = report["extractor"]
        print(
            f"features: {extractor['name']} (sha256 {extractor['sha256'][:16]}), "
            f"{report['num_samples']} samples vs {report['reference_count']} "
            f"real {report['reference']} images"
        )
    width = max((len(m["name"]) for m in report["metrics"]), default=0)
    for metric in report["metrics"]:
        print(f"{metric['name']:{width}}  {metric['value']:.6g}")


def _command_export(args, argv):
    if args.format == "web" and args.uint8:
        raise ValueError("--uint8 is not for --format web: the page draws the images")
    model = zoo.load(args.preset)
    if args.format == "saved_model":
        written = export.saved_model(
            model, args.output, uint8=args.uint8, overwrite=args.overwrite
        )
    elif args.format == "tflite":
        written = export.tflite(
            model,
            args.output,
            quantize=args.quantize,
            uint8=args.uint8,
            overwrite=args.overwrite,
        )
        _report(export.tflite_metrics(model, written, args.quantize), args, argv)
    elif args.format == "onnx":
        written = export.onnx(
            model, args.output, uint8=args.uint8, overwrite=args.overwrite
        )
        _report(export.onnx_metrics(model, written), args, argv)
    elif args.format == "web":
        written = export.web(
            model, args.output, zoo.path(args.preset).name, overwrite=args.overwrite
        )
    else:
        written = export.serving(
            model,
            args.output,
            zoo.path(args.preset).name,
            version=args.version,
            uint8=args.uint8,
            overwrite=args.overwrite,
        )
    print(f"wrote {written}")
    if args.format == "web":
        print(f"serve it with: python -m http.server -d {shlex.quote(str(written))}")


def _report(metrics: list[dict], args, argv) -> None:
    """Print an export's metrics; with --update-card, record them in the card."""
    for metric in metrics:
        print(f"{metric['name']:45} {metric['value']:.6g}")
    if args.update_card:
        zoo.record_metrics(args.preset, metrics, shlex.join(["keras-gen", *argv]))


def _command_train(args, argv):
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    output = training.train(
        args.preset,
        args.output,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        data_source=args.data,
        seed=args.seed,
        distribution=training.strategy(args.strategy, args.cpu_replicas),
        logdir=args.logdir,
        checkpoint_every=args.checkpoint_every,
        mixed_precision=args.mixed_precision,
        command=shlex.join(["keras-gen", *argv]),
        verbose=2 if args.quiet else None,  # --quiet: one line per epoch, no bar
        overwrite=args.overwrite,
        eval_every=args.eval_every,
        eval_samples=args.eval_samples,
    )
    print(f"wrote preset {output}")


def _command_detect(args, argv):
    model = zoo.load(args.preset)
    detection.require_detector(model, args.preset)
    pixels = detection.read_images(args.images, model.image_shape)
    for path, probability in zip(
        args.images, detection.synthetic_probability(model, pixels)
    ):
        print(f"{probability:.4f}  {path}")


def _add_sample(commands):
    sample = commands.add_parser(
        "sample", help="write a grid of generated images to a PNG"
    )
    _preset(sample)
    sample.add_argument("-n", "--num-samples", type=_integer(1, MAX_SAMPLE), default=64)
    sample.add_argument(
        "--seed", type=_integer(-(2**63)), default=None, help="same seed, same images"
    )
    sample.add_argument("-o", "--output", default="samples.png")
    sample.add_argument(
        "--prompt",
        help="conditional models: the classes to draw, in words of the dataset's "
        'labels, e.g. "ankle boot" or "an old woman" (keras_gen.prompts)',
    )
    sample.add_argument(
        "--per-class",
        nargs="?",
        const="",
        metavar="HEAD",
        help="conditional models: a row of -n samples for each class of HEAD (which "
        "a model with one head may leave out); --prompt may fix the other heads",
    )
    sample.add_argument(
        "--steps",
        type=_integer(1),
        help="diffusion presets: sampling steps (default: the model's)",
    )
    sample.add_argument(
        "--guidance",
        type=_finite_number,
        help="diffusion presets: classifier-free guidance scale; 0 is unconditional",
    )
    sample.add_argument(
        "--data",
        help="image-to-image presets, which show input / output / target rows of "
        "-n test images: the dataset file or folder (default: KERAS_GEN_DATA, then "
        "the usual places)",
    )
    _overwrite(sample)
    sample.set_defaults(run=_command_sample)


def _add_interpolate(commands):
    interpolate = commands.add_parser(
        "interpolate",
        help="images along latent paths between seeds: one row per pair, or a GIF",
    )
    _preset(interpolate)
    interpolate.add_argument(
        "--seeds",
        nargs="+",
        type=_integer(-(2**63)),
        required=True,
        help="two or more seeds; each neighbouring pair gives a row (the GIF loops)",
    )
    interpolate.add_argument("--steps", type=_integer(2, 64), default=8)
    interpolate.add_argument("--method", choices=latent.METHODS, default="slerp")
    interpolate.add_argument(
        "--prompt", help="conditional models: the classes of every image"
    )
    interpolate.add_argument("--gif", action="store_true", help="write an animated GIF")
    interpolate.add_argument("-o", "--output", default="interpolation.png")
    _overwrite(interpolate)
    interpolate.set_defaults(run=_command_interpolate)


def _add_translate(commands):
    translate = commands.add_parser(
        "translate",
        help="translate your images with an image-to-image preset: sketch or "
        "grayscale photo to face, 4x super-resolution",
    )
    _preset(translate)
    translate.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (PNG, JPEG, GIF, BMP): photos of any size, centre-cropped "
        "and resized as the preset's data were, then made into its input (a sketch, "
        "grayscale, 16x16) as in training",
    )
    translate.add_argument(
        "--input-is-prepared",
        action="store_true",
        help="the files are inputs already (a sketch, a low-resolution photo): only "
        "resized to the input's size and, for one-channel inputs, reduced to luma",
    )
    translate.add_argument(
        "--show-inputs",
        action="store_true",
        help="put the inputs the model read in a row above the outputs",
    )
    translate.add_argument(
        "-o",
        "--output",
        default="translated.png",
        help="PNG to write: the output itself for one input, a row per 8 for several",
    )
    _overwrite(translate)
    translate.set_defaults(run=_command_translate)


def _add_evaluate(commands):
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a preset: test metrics, FID/KID/precision/recall and their floor",
    )
    _preset(evaluate)
    evaluate.add_argument(
        "--num-samples",
        type=_integer(2, MAX_EVALUATE),
        default=1000,
        help="generated images (and per class for conditional models); "
        "image-to-image presets translate every test input instead",
    )
    evaluate.add_argument(
        "--class-samples",
        type=_integer(2, MAX_EVALUATE),
        help="generated images per class of a conditional model (default: "
        "--num-samples); fewer for models slow to sample, such as diffusion",
    )
    evaluate.add_argument(
        "--features",
        default="auto",
        help="auto (the dataset's classifier preset), inception, a classifier "
        "preset, or none",
    )
    evaluate.add_argument(
        "--reference",
        choices=("train", "test"),
        default="train",
        help="the real split generated images are compared with",
    )
    evaluate.add_argument(
        "--measure",
        type=_parts,
        default=zoo.EVALUATION_PARTS,
        metavar="PARTS",
        help="comma-separated parts to measure (default all): "
        f"{', '.join(zoo.EVALUATION_PARTS)}; --update-card replaces those numbers only",
    )
    evaluate.add_argument(
        "--guidance",
        type=_finite_number,
        help="diffusion presets: sample at this classifier-free guidance scale "
        "instead of the preset's own (to choose one; not with --update-card)",
    )
    evaluate.add_argument("--seed", type=_integer(0, TRAIN_SEED_MAX), default=0)
    evaluate.add_argument("--data", help="dataset file or folder")
    evaluate.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    _update_card(evaluate, "write the numbers into the preset's card and model card")
    _overwrite(evaluate)
    evaluate.set_defaults(run=_command_evaluate)


def _add_export(commands):
    export_command = commands.add_parser(
        "export",
        help="write a SavedModel, a TF Serving layout, TFLite or ONNX files, or a "
        "web page that samples in the browser",
    )
    _preset(export_command)
    export_command.add_argument(
        "--format", choices=export.FORMATS, default="saved_model"
    )
    export_command.add_argument("--output", required=True)
    export_command.add_argument(
        "--version",
        type=_integer(1),
        help="serving: version number (default: the next free one)",
    )
    export_command.add_argument(
        "--uint8", action="store_true", help="images as uint8 0..255, ready for PNG"
    )
    export_command.add_argument(
        "--quantize", choices=export.QUANTIZATIONS, default="none", help="tflite only"
    )
    _update_card(
        export_command,
        "tflite, onnx: record the file size and the error against Keras in the card",
    )
    _overwrite(export_command)
    export_command.set_defaults(run=_command_export)


def _add_train(commands):
    train = commands.add_parser(
        "train", help="train a preset's recipe into a preset folder"
    )
    _preset(train, "preset name or ./path of a preset folder whose recipe to train")
    train.add_argument("--epochs", type=_integer(1))
    train.add_argument("--steps-per-epoch", type=_integer(1))
    train.add_argument("--batch-size", type=_integer(1), help="the global batch")
    train.add_argument(
        "--data",
        help="dataset file or folder (default: KERAS_GEN_DATA, then the usual places)",
    )
    train.add_argument("--seed", type=_integer(0, TRAIN_SEED_MAX))
    train.add_argument(
        "--strategy",
        choices=training.STRATEGIES,
        default="auto",
        help="auto: all GPUs when there are several; multi_worker reads TF_CONFIG",
    )
    train.add_argument("--logdir", help="write TensorBoard logs here")
    train.add_argument(
        "--deterministic",
        action="store_true",
        help="TensorFlow op determinism: bit-identical reruns on GPUs too (slower there)",
    )
    train.add_argument(
        "--mixed-precision",
        action="store_true",
        help="compute in bfloat16 on CPUs, float16 with loss scaling on GPUs "
        "(variables, losses and the measured copy stay float32)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=_integer(1),
        default=500,
        metavar="STEPS",
        help="checkpoint the training state this often, and after every epoch",
    )
    _curve_flags(train)
    train.add_argument(
        "--cpu-replicas",
        type=_integer(1, 64),
        metavar="N",
        help="mirror over N logical CPU devices (multi-replica training without GPUs)",
    )
    train.add_argument(
        "--output",
        required=True,
        help="preset folder to write (replaced when training ends if keras_gen wrote it)",
    )
    _overwrite(train)
    train.set_defaults(run=_command_train)


def _curve_flags(train) -> None:
    """The flags of the training curve (training.train's eval_every, eval_samples)."""
    train.add_argument(
        "--eval-every",
        type=_integer(1),
        metavar="EPOCHS",
        help="measure the test NLL (likelihood models) or FID this often: the "
        "card's training curve, drawn in training_curve.png",
    )
    train.add_argument(
        "--eval-samples",
        type=_integer(2, MAX_EVALUATE),
        metavar="N",
        help="samples (or test images) per point of the training curve "
        f"(default {training.EVAL_SAMPLES})",
    )


def _add_detect(commands):
    detect = commands.add_parser(
        "detect",
        help="print the probability that each image is synthetic, by a detector "
        "preset (detector_faces)",
    )
    _preset(detect, "a real-vs-synthetic detector preset, e.g. detector_faces")
    detect.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (PNG, JPEG, GIF, BMP) of any size: centre-cropped and "
        "resized as the preset's data were; one line per image: P(synthetic), path",
    )
    detect.set_defaults(run=_command_detect)


def parser() -> argparse.ArgumentParser:
    """The keras-gen argument parser, one sub-parser per command."""
    main_parser = _Parser(prog="keras-gen", description=__doc__)
    commands = main_parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the zoo's presets").set_defaults(
        run=_command_list
    )
    info = commands.add_parser("info", help="show a preset's card")
    _preset(info)
    info.set_defaults(run=_command_info)
    for add in (
        _add_sample,
        _add_interpolate,
        _add_translate,
        _add_evaluate,
        _add_export,
        _add_train,
        _add_detect,
    ):
        add(commands)
    _output_flags(main_parser, default=False)
    for command in commands.choices.values():
        # SUPPRESS: a sub-command's flag sets the value, its absence keeps the top's.
        _output_flags(command, default=argparse.SUPPRESS)
    return main_parser


def _output_flags(parser, default):
    """-v/--verbose and -q/--quiet, before or after the command's name."""
    flags = parser.add_mutually_exclusive_group()
    flags.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="also show TensorFlow's own logs and Python warnings",
    )
    flags.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="no progress bars and no device line: results and errors only",
    )


# What a user's mistake raises: bad values, missing files, a refused output, a run
# that diverged or is locked. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, training.TrainingError)
# What a Unix tool exits with when its reader has gone (128 + SIGPIPE).
CLOSED_PIPE_EXIT = 141


# The commands that run a model; the others only read cards.
MODEL_COMMANDS = (
    "sample",
    "interpolate",
    "translate",
    "evaluate",
    "export",
    "train",
    "detect",
)


def main(argv: list[str] | None = None, *, command_line: bool = False) -> int:
    """Run one keras-gen command; 0 when it succeeds, 2 for a user's mistake.

    `command_line`: this process is the `keras-gen` program (keras_gen.__main__),
    so a model command first says which device runs it. In-process callers get
    only the command's own output.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if command_line and args.command in MODEL_COMMANDS:
        where = _startup.devices(hide_logs=not args.verbose)
        if not args.quiet:
            print(f"keras-gen: running on {where}", file=sys.stderr)
    try:
        with (
            progress.showing(not args.quiet and _is_terminal(sys.stderr)),
            _startup.python_logs_hidden(not args.verbose),
        ):
            args.run(args, argv)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        _stdout_discarded()
        return CLOSED_PIPE_EXIT
    except USER_ERRORS as error:
        message = " ".join(str(error).split("\n"))
        print(f"keras-gen {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _stdout_discarded() -> None:
    """Point stdout at /dev/null: its reader (`keras-gen list | head`) has gone, and
    Python's flush at exit would otherwise complain about the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


if __name__ == "__main__":
    sys.exit(main())
