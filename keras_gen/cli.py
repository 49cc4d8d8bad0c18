"""The keras-gen command: a thin layer over keras_gen's Python API."""

import argparse
import json
import shlex
import sys

import tensorflow as tf

from keras_gen import _files, evaluation, export, images, training, zoo
from keras_gen.models import base


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="keras-gen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the zoo's presets")
    info = commands.add_parser("info", help="show a preset's card")
    info.add_argument("preset", help="preset name or preset folder")
    sample = commands.add_parser(
        "sample", help="write a grid of generated images to a PNG"
    )
    sample.add_argument("preset", help="preset name or preset folder")
    sample.add_argument("-n", "--num-samples", type=int, default=64)
    sample.add_argument("--seed", type=int, default=None, help="same seed, same images")
    sample.add_argument("-o", "--output", default="samples.png")
    sample.add_argument(
        "--prompt",
        help='conditional models: the classes to draw, e.g. "ankle boot" or "female 65+"',
    )
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a preset: test metrics, FID/KID/precision/recall and their floor",
    )
    evaluate.add_argument("preset", help="preset name or preset folder")
    evaluate.add_argument(
        "--num-samples",
        type=int,
        default=1000,
        help="generated images (and per class for conditional models)",
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
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--data", help="dataset file or folder")
    evaluate.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    evaluate.add_argument(
        "--update-card",
        action="store_true",
        help="write the numbers into the preset's card and model card",
    )
    export_command = commands.add_parser(
        "export", help="write a SavedModel, a TF Serving layout or TFLite files"
    )
    export_command.add_argument("preset", help="preset name or preset folder")
    export_command.add_argument(
        "--format", choices=export.FORMATS, default="saved_model"
    )
    export_command.add_argument("--output", required=True)
    export_command.add_argument(
        "--version",
        type=int,
        help="serving: version number (default: the next free one)",
    )
    export_command.add_argument(
        "--uint8", action="store_true", help="images as uint8 0..255, ready for PNG"
    )
    export_command.add_argument(
        "--quantize", choices=export.QUANTIZATIONS, default="none", help="tflite only"
    )
    export_command.add_argument(
        "--update-card",
        action="store_true",
        help="tflite: record the file size and the error against Keras in the card",
    )
    train = commands.add_parser(
        "train", help="train a preset's recipe into a preset folder"
    )
    train.add_argument(
        "preset", help="preset name or preset folder whose recipe to train"
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument(
        "--data",
        help="dataset file or folder (default: KERAS_GEN_DATA, then the usual places)",
    )
    train.add_argument("--seed", type=int)
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
        help="float16 compute with loss scaling (for GPUs)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        metavar="STEPS",
        help="checkpoint the training state this often, and after every epoch",
    )
    train.add_argument(
        "--cpu-replicas",
        type=int,
        metavar="N",
        help="mirror over N logical CPU devices (multi-replica training without GPUs)",
    )
    train.add_argument(
        "--output",
        required=True,
        help="preset folder to write (replaced when training ends)",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for name in zoo.list():
                print(f"{name:20} {zoo.card(name).get('description', '')}")
        elif args.command == "info":
            print(json.dumps(zoo.card(args.preset), indent=2))
        elif args.command == "sample":
            if args.num_samples < 1:
                parser.error("--num-samples must be at least 1")
            model = zoo.load(args.preset)
            conditions = {}
            if args.prompt is not None:
                if not hasattr(model, "conditions"):
                    raise ValueError(
                        f"{args.preset} is not a conditional model; drop --prompt"
                    )
                conditions = base.parse_prompt(args.prompt, model.conditions)
            images.write_png(
                args.output,
                model.generate(args.num_samples, seed=args.seed, **conditions),
            )
            print(f"wrote {args.num_samples} samples of {args.preset} to {args.output}")
        elif args.command == "evaluate":
            if args.num_samples < 2:
                parser.error("--num-samples must be at least 2")
            command = shlex.join(["keras-gen", *argv])
            report = evaluation.evaluate(
                zoo.load(args.preset),
                zoo.card(args.preset)["data"],
                command,
                num_samples=args.num_samples,
                seed=args.seed,
                data_source=args.data,
                feature_extractor=args.features,
                reference=args.reference,
            )
            report = {"preset": str(args.preset), **report}
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
            if args.json:
                _files.write_text(args.json, json.dumps(report, indent=2) + "\n")
                print(f"wrote {args.json}")
            if args.update_card:
                zoo.record_metrics(args.preset, report["metrics"], command)
        elif args.command == "export":
            model = zoo.load(args.preset)
            if args.format == "saved_model":
                written = export.saved_model(model, args.output, uint8=args.uint8)
            elif args.format == "tflite":
                written = export.tflite(
                    model, args.output, quantize=args.quantize, uint8=args.uint8
                )
                metrics = export.tflite_metrics(model, written, args.quantize)
                for metric in metrics:
                    print(f"{metric['name']:45} {metric['value']:.6g}")
                if args.update_card:
                    zoo.record_metrics(
                        args.preset, metrics, shlex.join(["keras-gen", *argv])
                    )
            else:
                name = zoo.path(args.preset).name
                written = export.serving(
                    model, args.output, name, version=args.version, uint8=args.uint8
                )
            print(f"wrote {written}")
        elif args.command == "train":
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
            )
            print(f"wrote preset {output}")
    except (ValueError, FileNotFoundError, training.TrainingDiverged) as error:
        print(f"keras-gen: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
