"""What each keras-gen command does, once keras_gen.cli has parsed its flags.

Kept apart from the parser so that `keras-gen --help` and a mistyped flag are
answered before this module, and TensorFlow with it, is imported.
"""

import inspect
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_gen import (
    _files,
    data,
    evaluation,
    export,
    images,
    prompts,
    training,
    zoo,
)
from keras_gen.applications import detection, latent
from keras_gen.cli import MAX_SAMPLE
from keras_gen.models import base, conditioning

# What a user's mistake raises: bad values, missing files, a refused output, a run
# that diverged or is locked. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, training.TrainingError)
# The flags of `sample` (and evaluate's last two) that are arguments of generate.
SAMPLING_OPTIONS = ("steps", "guidance", "truncation")


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
    and conditions: a diffusion model's steps, guidance, sampler and eta, a GAN's
    truncation."""
    parameters = inspect.signature(model_class.generate).parameters.values()
    return {
        p.name
        for p in parameters
        if p.kind == p.POSITIONAL_OR_KEYWORD
        and p.name not in ("self", "num_samples", "seed")
    }


def _sampling_options(args, model) -> dict:
    """--steps, --guidance and --truncation as generate's arguments, refused where
    it takes none."""
    given = {
        name: value
        for name in SAMPLING_OPTIONS
        if (value := getattr(args, name, None)) is not None
    }
    refused = [name for name in given if name not in _generate_options(type(model))]
    if refused:
        takers = [
            name
            for name in zoo.list()
            if refused[0] in _generate_options(zoo.model_class(zoo.card(name)))
        ]
        raise ValueError(
            f"{args.preset} is a {type(model).__name__}, which takes no "
            f"{' or '.join(f'--{name}' for name in refused)}; --{refused[0]} is for "
            f"these presets: {', '.join(takers) or '(none)'}"
        )
    return given


def _measured_otherwise(args, model) -> None:
    """evaluate --guidance / --guidance-interval / --truncation: sample otherwise than
    the preset does, to choose a setting; a card holds the numbers of the preset's
    own settings only."""
    chosen = _sampling_options(args, model)  # refuses a model that takes neither
    chosen.pop("steps", None)
    if getattr(args, "guidance_interval", None) is not None:
        # Not an argument of generate but a setting of the guidance it takes.
        if "guidance" not in _generate_options(type(model)):
            raise ValueError(
                f"{args.preset} is a {type(model).__name__}, which takes no "
                "--guidance-interval; it is for conditional diffusion presets"
            )
        chosen["guidance_interval"] = args.guidance_interval
    if {"guidance", "guidance_interval"} & set(chosen) and not model.conditions:
        raise ValueError(f"{args.preset} is unconditional: it has no guidance to set")
    for name, value in chosen.items():
        own = getattr(model, name)
        if args.update_card and value != own:
            raise ValueError(
                f"--{name.replace('_', '-')} {_shown(value)} with --update-card: the "
                f"card holds the numbers of the preset's own {name}, {own}; measure "
                f"without --update-card, or set model.config.{name} in the card and "
                "measure every part again"
            )
        setattr(model, name, value)


def _shown(value) -> str:
    """A number, or a tuple of them (an interval), as a flag takes it."""
    values = value if isinstance(value, tuple) else (value,)
    return ",".join(f"{item:g}" for item in values)


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
    _measured_otherwise(args, model)
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
    for name in ("guidance", "guidance_interval", "truncation"):
        if getattr(args, name) is not None:
            report[name] = getattr(args, name)
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


def _record_translation_figure(preset, model, spec, splits):
    """The card's input / output / target figure of an image-to-image preset."""
    kind = _paired_kind(preset, spec["dataset"])
    shown, columns = evaluation.translation_figure(model, splits.images("test"), kind)
    entry = evaluation.figure_entry(str(preset), kind, splits.source)
    zoo.record_figure(preset, entry, shown, columns)
    print(f"wrote {entry['file']} into {zoo.path(preset)}")


def _print_report(report):
    for name in ("guidance", "guidance_interval", "truncation"):
        if name in report:
            print(f"{name}: {_shown(report[name])}")
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
        init_from=args.init_from,
        learning_rate_decay=args.learning_rate_decay,
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


# Each command's function, by the command's name.
BY_NAME = {
    "list": _command_list,
    "info": _command_info,
    "sample": _command_sample,
    "interpolate": _command_interpolate,
    "translate": _command_translate,
    "evaluate": _command_evaluate,
    "export": _command_export,
    "train": _command_train,
    "detect": _command_detect,
}
