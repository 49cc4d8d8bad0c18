"""The keras-gen command: a thin layer over keras_gen's Python API.

A user's mistake ends the command with one line on stderr and exit code 2, never
a traceback: flags are checked when parsed, everything else where it enters the
API. Commands that run a model first say on stderr which device runs them.
TensorFlow's own logs stay hidden unless -v/--verbose; long work shows progress
on a terminal unless -q/--quiet.
"""

import argparse
import math
import os
import sys

from keras_gen import _choices, _startup, progress

INT64_MAX = 2**63 - 1
# keras.utils.set_random_seed seeds NumPy too, which takes 32-bit seeds only.
TRAIN_SEED_MAX = 2**32 - 1
# Generated images are held in memory and tiled into one PNG: 1024 64x64 faces
# make a 2,200x2,200 grid. The exported `sample` signature has the same bound.
MAX_SAMPLE = 1024
MAX_EVALUATE = 50_000  # the customary FID sample count
EXPORT_FORMATS = ("saved_model", "serving", "tflite", "onnx", "web")  # keras_gen.export


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
    """An argparse type: comma-separated evaluation parts (EVALUATION_PARTS)."""
    named = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return _choices.checked_parts(named)
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


def _truncation(text: str) -> float:
    """An argparse type: a positive float ("inf" turns truncation off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive number (or inf: untruncated), got {text!r}"
        )
    return value


def _interval(text: str) -> tuple[float, float]:
    """An argparse type: LOW,HIGH, two numbers (the model checks their order)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two numbers LOW,HIGH, got {text!r}"
        ) from None
    return low, high


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
        "--truncation",
        type=_truncation,
        help="GAN presets: latents from N(0, 1) truncated to [-T, T], more typical "
        "and less diverse samples (default: the model's; inf: untruncated)",
    )
    sample.add_argument(
        "--data",
        help="image-to-image presets, which show input / output / target rows of "
        "-n test images: the dataset file or folder (default: KERAS_GEN_DATA, then "
        "the usual places)",
    )
    _overwrite(sample)


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
    interpolate.add_argument(
        "--method", choices=_choices.INTERPOLATIONS, default="slerp"
    )
    interpolate.add_argument(
        "--prompt", help="conditional models: the classes of every image"
    )
    interpolate.add_argument("--gif", action="store_true", help="write an animated GIF")
    interpolate.add_argument("-o", "--output", default="interpolation.png")
    _overwrite(interpolate)


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
        default=_choices.EVALUATION_PARTS,
        metavar="PARTS",
        help="comma-separated parts to measure (default all): "
        f"{', '.join(_choices.EVALUATION_PARTS)}; --update-card replaces those numbers only",
    )
    _sampling_otherwise_flags(evaluate)
    evaluate.add_argument("--seed", type=_integer(0, TRAIN_SEED_MAX), default=0)
    evaluate.add_argument("--data", help="dataset file or folder")
    evaluate.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    _update_card(evaluate, "write the numbers into the preset's card and model card")
    _overwrite(evaluate)


def _sampling_otherwise_flags(evaluate):
    """evaluate's flags that sample otherwise than the preset does, to choose a setting."""
    evaluate.add_argument(
        "--guidance",
        type=_finite_number,
        help="diffusion presets: sample at this classifier-free guidance scale "
        "instead of the preset's own (to choose one; not with --update-card)",
    )
    evaluate.add_argument(
        "--guidance-interval",
        type=_interval,
        metavar="LOW,HIGH",
        help="diffusion presets: guide only the steps whose noise level sigma is in "
        "(LOW, HIGH] instead of the preset's own interval (to choose one; not with "
        "--update-card)",
    )
    evaluate.add_argument(
        "--truncation",
        type=_truncation,
        help="GAN presets: sample latents truncated to [-T, T] instead of the "
        "preset's own setting (to choose one; not with --update-card)",
    )


def _add_export(commands):
    export_command = commands.add_parser(
        "export",
        help="write a SavedModel, a TF Serving layout, TFLite or ONNX files, or a "
        "web page that samples in the browser",
    )
    _preset(export_command)
    export_command.add_argument(
        "--format", choices=EXPORT_FORMATS, default="saved_model"
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
        "--quantize", choices=_choices.QUANTIZATIONS, default="none", help="tflite only"
    )
    _update_card(
        export_command,
        "tflite, onnx: record the file size and the error against Keras in the card",
    )
    _overwrite(export_command)


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
        choices=_choices.STRATEGIES,
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
    _fine_tuning_flags(train)
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
        f"(default {_choices.EVAL_SAMPLES})",
    )


def _fine_tuning_flags(train) -> None:
    """The flags of fine-tuning (training.train's init_from, learning_rate_decay)."""
    train.add_argument(
        "--init-from",
        metavar="PRESET",
        help="fine-tune: start from this preset's weights (the same network as the "
        "recipe's) instead of a fresh initialization",
    )
    train.add_argument(
        "--learning-rate-decay",
        choices=_choices.LEARNING_RATE_DECAYS,
        help="anneal the recipe's constant learning rate to zero over the steps "
        "each network trains in this run; the recipe keeps its own rate",
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


def parser() -> argparse.ArgumentParser:
    """The keras-gen argument parser, one sub-parser per command."""
    main_parser = _Parser(prog="keras-gen", description=__doc__)
    commands = main_parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the zoo's presets")
    info = commands.add_parser("info", help="show a preset's card")
    _preset(info)
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
    commands = _commands(hide_logs=command_line and not args.verbose)
    if command_line and args.command in MODEL_COMMANDS:
        where = _startup.devices(hide_logs=not args.verbose)
        if not args.quiet:
            print(f"keras-gen: running on {where}", file=sys.stderr)
    try:
        with (
            progress.showing(not args.quiet and _is_terminal(sys.stderr)),
            _startup.python_logs_hidden(not args.verbose),
        ):
            commands.BY_NAME[args.command](args, argv)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        _stdout_discarded()
        return CLOSED_PIPE_EXIT
    except commands.USER_ERRORS as error:
        message = " ".join(str(error).split("\n"))
        print(f"keras-gen {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _commands(hide_logs: bool):
    """keras_gen.commands, imported only once the flags are read: it loads TensorFlow,
    whose start-up logs (some from C++, to file descriptor 2) `hide_logs` hides,
    with oneDNN's CPU kernels on unless the user turned them off."""
    _startup.set_unless_set(_startup.FAST_ENVIRONMENT)
    with _startup.tensorflow_start_quiet(hide_logs):
        from keras_gen import commands
    return commands


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
