"""A table of bad inputs: each is refused with a message naming what was wrong.

Every row runs in an empty working directory (`tmp`) prepared by its `setup`.
A CLI row must exit with code 2 and print one line naming the offending thing, and
no traceback; an API row must raise `ValueError` (or a documented subclass) whose
message names it. For both, no file under `tmp` or in the shipped zoo changes
(hashes of the trees before and after). A new bad input found later is one new row.
"""

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from keras_gen import cli, data, export, zoo

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Row:
    """One bad input: CLI words (formatted with tmp=...) or an API call on tmp."""

    match: str  # a fragment the message must contain (case-insensitive)
    argv: tuple[str, ...] = ()
    call: Callable[[Path], object] | None = None
    setup: Callable[[Path], object] | None = None
    error: type[Exception] = ValueError
    needs: tuple[Path, ...] = field(default_factory=tuple)


def cli_row(*argv, match, setup=None, needs=()):
    return Row(match=match, argv=argv, setup=setup, needs=needs)


def api_row(call, *, match, setup=None, error=ValueError, needs=()):
    return Row(match=match, call=call, setup=setup, error=error, needs=needs)


# --- setups: each makes what its row needs under tmp -------------------------------


def _fifo(tmp):
    os.mkfifo(tmp / "fifo.png")


def _user_folder(tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.txt").write_text("years of work")


def _user_file(tmp):
    (tmp / "notes.txt").write_text("not a folder")


def _untrained_translator(tmp):
    """A photo, and tmp/recipe: pix2pix_edges2faces' card without its weights."""
    import json

    _user_png(tmp)
    card = zoo.card("pix2pix_edges2faces")
    del card["weights"]
    (tmp / "recipe").mkdir()
    (tmp / "recipe" / "card.json").write_text(json.dumps(card))


def _user_png(tmp):
    # A PNG the user made: keras_gen did not write it, so it is not replaced.
    import tensorflow as tf

    (tmp / "photo.png").write_bytes(
        tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    )


def _symlink(tmp):
    (tmp / "target.png").write_text("the link's target")
    (tmp / "link.png").symlink_to(tmp / "target.png")


_HELD = []


def _locked_output(tmp):
    """Another run holds the lock on tmp/out (a second open file description)."""
    import fcntl

    descriptor = os.open(tmp / "out.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(descriptor, b"4242\n")
    _HELD.append(descriptor)


def _other_run_checkpoint(tmp):
    """A checkpoint of a run with another seed beside tmp/out."""
    state = tmp / "out.train-state"
    state.mkdir()
    (state / ".keras_gen").write_text("written by keras_gen\n")
    (state / "run.json").write_text('{"seed": 99}')
    (state / "state.weights.h5").write_bytes(b"not used")


def _foreign_checkpoint(tmp):
    state = tmp / "out.train-state"
    state.mkdir()
    (state / "mine.txt").write_text(
        "a folder of the user's that happens to share the name"
    )


class _ThreeReplicas:
    num_replicas_in_sync = 3


def _train(tmp, **settings):
    from keras_gen import training

    return training.train(
        "vae_mnist", tmp / "out", data_source=SHARED / "mnist.npz", **settings
    )


def _data_without_test_split(tmp):
    np.savez(tmp / "train_only.npz", x_train=np.zeros((4, 28, 28), np.uint8))


def _zoo_card(tmp, changes=(), text=None, name="p"):
    """tmp/<name>/card.json: the tiny test card with ("a.b", value) changes applied."""
    from test_zoo import write_card

    return write_card(tmp / name, changes, text)


def _zoo_batch_size_text(tmp):
    _zoo_card(tmp, [("training.batch_size", "8")])


def _zoo_no_batch_size(tmp):
    from test_zoo import DELETE

    _zoo_card(tmp, [("training.batch_size", DELETE)])


def _zoo_typo_key(tmp):
    _zoo_card(tmp, [("trainig", {})])


def _zoo_broken_json(tmp):
    _zoo_card(tmp, text='{\n  "model": {"class": "DCGAN",}\n}')


def _zoo_json_list(tmp):
    _zoo_card(tmp, text="[]")


def _zoo_unknown_class(tmp):
    _zoo_card(tmp, [("model.class", "StyleGAN")])


def _zoo_config_typo(tmp):
    _zoo_card(tmp, [("model.config.latent_dimm", 3)])


def _zoo_config_type(tmp):
    _zoo_card(tmp, [("model.config.image_size", "16")])


def _zoo_config_value(tmp):
    _zoo_card(tmp, [("model.config.image_size", 15)])


def _zoo_bad_sha256(tmp):
    _zoo_card(tmp, [("weights", {"model.weights.h5": {"sha256": "abc", "url": None}})])


def _zoo_weights_path(tmp):
    entry = {"sha256": "0" * 64, "url": None}
    _zoo_card(tmp, [("weights", {"../../model.weights.h5": entry})])


def _zoo_figure_path(tmp):
    figure = {"file": "../../etc/passwd", "caption": "-", "command": "-"}
    _zoo_card(tmp, [("figures", [figure])])


def _zoo_weights_entry(tmp):
    entry = {"sha256": "0" * 64, "url": None}
    return _zoo_card(tmp, [("weights", {"model.weights.h5": entry})])


def _zoo_weights_dev_zero(tmp):
    os.symlink("/dev/zero", _zoo_weights_entry(tmp) / "model.weights.h5")


def _zoo_weights_fifo(tmp):
    os.mkfifo(_zoo_weights_entry(tmp) / "model.weights.h5")


def _zoo_card_fifo(tmp):
    (tmp / "p").mkdir()
    os.mkfifo(tmp / "p" / "card.json")


def _zoo_folder_here(tmp):
    _zoo_card(tmp, name="mine")


def _zoo_shadow(tmp):
    # A folder named like a shipped preset, here: the bare name still means the preset.
    _zoo_card(tmp, text="not json", name="vae_mnist")


def _export_tiny(family="dcgan"):
    """A tiny model of tests/tiny.py; refused outputs are checked before it is traced."""
    import tiny

    return getattr(tiny, family)()


def _export_user_config(tmp):
    (tmp / "models").mkdir()
    (tmp / "models" / "models.config").write_text("model_config_list {}  # mine\n")


def _export_quoted_preset(tmp):
    import shutil

    shutil.copytree(zoo.root() / "vae_mnist", tmp / 'q"x')


_DATA_HEADER = "member\tage\tgender\tsplit"
_DATA_ROWS = (
    "images/000000.jpg\t30\tmale\ttrain",
    "images/000001.jpg\t40\tfemale\ttest",
    "images/000002.jpg\t50\tmale\ttrain",
)


def _data_tar(tmp, members, name="faces.tar"):
    """tmp/<name>: a tar of name -> bytes."""
    import io
    import tarfile

    with tarfile.open(tmp / name, "w") as archive:
        for member, payload in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def _data_faces(tmp, rows=_DATA_ROWS, members=3):
    """tmp/faces.tar of tiny JPEGs images/00000i.jpg, and faces_labels.tsv of `rows`."""
    import tensorflow as tf

    blob = tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy()
    _data_tar(tmp, {f"images/{i:06d}.jpg": blob for i in range(members)})
    (tmp / "faces_labels.tsv").write_text("\n".join([_DATA_HEADER, *rows]) + "\n")


def _data_swapped_labels(tmp):
    swapped = "images/000001.jpg\tfemale\t40\ttest"
    _data_faces(tmp, (_DATA_ROWS[0], swapped, _DATA_ROWS[2]))


def _data_duplicate_member(tmp):
    _data_faces(tmp, (*_DATA_ROWS, _DATA_ROWS[0]))


def _data_short_row(tmp):
    _data_faces(tmp, (*_DATA_ROWS[:2], "images/000002.jpg\t50\tmale"))


def _data_unknown_split(tmp):
    _data_faces(tmp, (*_DATA_ROWS[:2], "images/000002.jpg\t50\tmale\tvalidation"))


def _data_negative_age(tmp):
    _data_faces(tmp, ("images/000000.jpg\t-1\tmale\ttrain", *_DATA_ROWS[1:]))


def _data_unknown_gender(tmp):
    _data_faces(tmp, (*_DATA_ROWS[:2], "images/000002.jpg\t50\tM\ttrain"))


def _data_missing_member(tmp):
    _data_faces(tmp, (*_DATA_ROWS, "images/000009.jpg\t20\tmale\ttrain"))


def _data_unlisted_image(tmp):
    _data_faces(tmp, _DATA_ROWS, members=4)


def _data_npz(tmp, name="bad.npz", **arrays):
    """tmp/<name>: a small MNIST-like .npz with `arrays` replacing the good ones."""
    good = {
        "x_train": np.zeros((4, 28, 28), np.uint8),
        "y_train": np.arange(4, dtype=np.uint8),
        "x_test": np.zeros((2, 28, 28), np.uint8),
        "y_test": np.arange(2, dtype=np.uint8),
    }
    np.savez(tmp / name, **{**good, **arrays})


def _data_float_npz(tmp):
    _data_npz(tmp, x_train=np.full((4, 28, 28), 0.5, np.float32))


def _data_int64_npz(tmp):
    _data_npz(tmp, x_train=np.full((4, 28, 28), 255, np.int64))


def _data_flat_npz(tmp):
    _data_npz(tmp, x_train=np.zeros(4 * 28 * 28, np.uint8))


def _data_wrong_size_npz(tmp):
    _data_npz(tmp, x_train=np.zeros((4, 32, 32), np.uint8))


def _data_label_range_npz(tmp):
    _data_npz(tmp, y_train=np.array([0, 1, 2, 10]))


def _data_idx(tmp, name, array, extra=b""):
    """tmp/fashion/<name>: a gzipped IDX file of `array` (uint8), then `extra` bytes."""
    import gzip
    import struct

    (tmp / "fashion").mkdir(exist_ok=True)
    shape = struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(tmp / "fashion" / name, "wb") as file:
        file.write(b"\0\0\x08" + bytes([array.ndim]) + shape + array.tobytes() + extra)


def _data_idx_pair(tmp, images=5, labels=5, extra=b""):
    pixels = np.zeros((images, 28, 28), np.uint8)
    _data_idx(tmp, "train-images-idx3-ubyte.gz", pixels, extra)
    _data_idx(tmp, "train-labels-idx1-ubyte.gz", np.zeros(labels, np.uint8))


def _data_idx_counts(tmp):
    _data_idx_pair(tmp, labels=4)


def _data_idx_oversized(tmp):
    _data_idx_pair(tmp, extra=b"\0" * 28)


def _data_idx_swapped(tmp):
    _data_idx(tmp, "train-images-idx3-ubyte.gz", np.zeros(5, np.uint8))
    _data_idx(tmp, "train-labels-idx1-ubyte.gz", np.zeros((5, 28, 28), np.uint8))


def _data_png_bomb(tmp):
    """A PNG header claiming 20000x20000: over 1 GB decoded, refused before decoding."""
    import struct

    ihdr = struct.pack(">II", 20000, 20000) + b"\x08\x02\0\0\0"
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4
    _data_tar(tmp, {"images/bomb.png": header})


def _data_sliver(tmp):
    import tensorflow as tf

    sliver = tf.io.encode_png(np.zeros((5000, 1, 3), np.uint8)).numpy()
    _data_tar(tmp, {"images/sliver.png": sliver})


def _data_random_tar(tmp):
    (tmp / "faces.tar").write_bytes(np.random.default_rng(0).bytes(4096))


def _data_empty_tar(tmp):
    _data_tar(tmp, {"notes.txt": b"no faces"})


def _translation_preset(tmp):
    """tmp/p2p: an untrained 64x64 Pix2Pix preset of sketches (faces_edges), with
    the user's tmp/photo.png and tmp/notes.txt beside it."""
    card = {
        "description": "tiny",
        "model": {
            "class": "Pix2Pix",
            "config": {"generator_filters": 2, "discriminator_filters": 2},
        },
        "data": {
            "dataset": "faces_edges",
            "split": "train",
            "description": "-",
            "terms": "-",
        },
        "training": {"epochs": 1, "batch_size": 4, "seed": 0, "compile": {}},
    }
    zoo.write(tmp / "p2p", zoo.build(card), card, None)
    _user_png(tmp)
    _user_file(tmp)


# --- the table: sections by issue item; add rows, never weaken one ----------------

MNIST = (SHARED / "mnist.npz",)
TRAIN = ("train", "vae_mnist", "--data", str(SHARED / "mnist.npz"))

ROWS: dict[str, Row] = {
    # Outputs: nothing the user owns is replaced or written through.
    "sample into a FIFO": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/fifo.png",
        match="fifo.png",
        setup=_fifo,
    ),
    "sample into a FIFO, even with --overwrite": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/fifo.png",
        "--overwrite",
        match="never writes through",
        setup=_fifo,
    ),
    "sample over the user's PNG": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/photo.png",
        match="photo.png",
        setup=_user_png,
    ),
    "sample over a symbolic link": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/link.png",
        match="symbolic link",
        setup=_symlink,
    ),
    "sample over a folder": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/mine",
        match="mine",
        setup=_user_folder,
    ),
    "sample under a file": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/notes.txt/x.png",
        match="is not a folder",
        setup=_user_file,
    ),
    "sample from a classifier": cli_row(
        "sample",
        "classifier_mnist",
        "-n",
        "1",
        "-o",
        "{tmp}/x.png",
        match="does not generate",
    ),
    "sample --prompt for an unconditional model": cli_row(
        "sample",
        "vae_mnist",
        "-n",
        "1",
        "--prompt",
        "seven",
        "-o",
        "{tmp}/x.png",
        match="not a conditional model",
    ),
    "train into the user's folder": cli_row(
        *TRAIN,
        "--output",
        "{tmp}/mine",
        match="mine",
        setup=_user_folder,
    ),
    "train into a file": cli_row(
        *TRAIN,
        "--output",
        "{tmp}/notes.txt",
        match="notes.txt",
        setup=_user_file,
    ),
    "train into the user's folder (API)": api_row(
        lambda tmp: __import__("keras_gen").training.train("vae_mnist", tmp / "mine"),
        match="--overwrite",
        setup=_user_folder,
    ),
    "evaluate --json into a folder": cli_row(
        "evaluate",
        "vae_mnist",
        "--json",
        "{tmp}/mine",
        match="mine",
        setup=_user_folder,
    ),
    "evaluate --json over the user's file": cli_row(
        "evaluate",
        "vae_mnist",
        "--json",
        "{tmp}/notes.txt",
        match="notes.txt",
        setup=_user_file,
    ),
    "generate a class index out of range": api_row(
        lambda tmp: zoo.load("cgan_fashion_mnist").generate(2, labels=12),
        match="index 12 is out of range",
    ),
    "generate an unknown class name": api_row(
        lambda tmp: zoo.load("cvae_faces").generate(2, gender="robot"),
        match="unknown gender 'robot'",
    ),
    "decode without a condition the model needs": api_row(
        lambda tmp: zoo.load("cvae_faces").decode(np.zeros((1, 64), "float32")),
        match="age",
    ),
    # Checkpoints belong to one run; one run at a time.
    "train resumes another run's checkpoint": cli_row(
        *TRAIN,
        "--seed",
        "3",
        "--output",
        "{tmp}/out",
        match="seed: checkpoint 99",
        setup=_other_run_checkpoint,
        needs=MNIST,
    ),
    "train resumes a folder keras_gen did not write": cli_row(
        *TRAIN,
        "--output",
        "{tmp}/out",
        match="out.train-state",
        setup=_foreign_checkpoint,
        needs=MNIST,
    ),
    "train while another run holds the output": cli_row(
        *TRAIN,
        "--output",
        "{tmp}/out",
        match="process 4242",
        setup=_locked_output,
        needs=MNIST,
    ),
    # Numeric flags: checked when parsed, `is None` for defaults.
    "sample -n 0": cli_row("sample", "vae_mnist", "-n", "0", match="--num-samples"),
    "sample -n -3": cli_row("sample", "vae_mnist", "-n", "-3", match="--num-samples"),
    "sample -n too many for memory": cli_row(
        "sample", "vae_mnist", "-n", "100000000", match="from 1 to 1024"
    ),
    "sample -n not a number": cli_row(
        "sample", "vae_mnist", "-n", "ten", match="'ten'"
    ),
    "sample --seed beyond int64": cli_row(
        "sample", "vae_mnist", "--seed", str(2**64), match="--seed"
    ),
    "evaluate --num-samples 1": cli_row(
        "evaluate", "vae_mnist", "--num-samples", "1", match="--num-samples"
    ),
    "evaluate --measure with an unknown part": cli_row(
        "evaluate",
        "vae_mnist",
        "--measure",
        "samples,fid",
        match="unknown part 'fid'; give some of test, samples, steps, conditions",
    ),
    "train a preset that a tool makes": cli_row(
        "train",
        "vae_mnist_gmm",
        "--data",
        str(SHARED / "mnist.npz"),
        "--output",
        "{tmp}/o",
        match="latent_mixture.py",
    ),
    "train --epochs 0": cli_row(
        *TRAIN, "--epochs", "0", "--output", "o", match="--epochs"
    ),
    "train --epochs -1": cli_row(
        *TRAIN, "--epochs", "-1", "--output", "o", match="--epochs"
    ),
    "train --batch-size 0": cli_row(
        *TRAIN, "--batch-size", "0", "--output", "o", match="--batch-size"
    ),
    "train --steps-per-epoch 0": cli_row(
        *TRAIN, "--steps-per-epoch", "0", "--output", "o", match="--steps-per-epoch"
    ),
    "train --checkpoint-every 0": cli_row(
        *TRAIN, "--checkpoint-every", "0", "--output", "o", match="--checkpoint-every"
    ),
    "train --cpu-replicas -1": cli_row(
        *TRAIN, "--cpu-replicas", "-1", "--output", "o", match="--cpu-replicas"
    ),
    "train --seed -1": cli_row(*TRAIN, "--seed", "-1", "--output", "o", match="--seed"),
    "train --seed beyond 32 bits": cli_row(
        *TRAIN, "--seed", str(2**32), "--output", "o", match="--seed"
    ),
    "train epochs=0 (API)": api_row(
        lambda tmp: _train(tmp, epochs=0),
        match="epochs (--epochs) must be a positive integer",
    ),
    "train batch_size=-8 (API)": api_row(
        lambda tmp: _train(tmp, batch_size=-8), match="batch_size (--batch-size)"
    ),
    "train seed=2.5 (API)": api_row(lambda tmp: _train(tmp, seed=2.5), match="--seed"),
    "train checkpoint_every=0 (API)": api_row(
        lambda tmp: _train(tmp, checkpoint_every=0), match="(--checkpoint-every)"
    ),
    "train --eval-every 0": cli_row(
        *TRAIN, "--eval-every", "0", "--output", "o", match="--eval-every"
    ),
    "train --eval-every not a number": cli_row(
        *TRAIN, "--eval-every", "two", "--output", "o", match="'two'"
    ),
    "train --eval-samples 1": cli_row(
        *TRAIN,
        "--eval-every",
        "1",
        "--eval-samples",
        "1",
        "--output",
        "o",
        match="--eval-samples",
    ),
    "train --eval-samples without --eval-every": cli_row(
        *TRAIN,
        "--eval-samples",
        "100",
        "--output",
        "{tmp}/o",
        match="give eval_every (--eval-every) too",
    ),
    "train --eval-every beyond the epochs": cli_row(
        *TRAIN,
        "--epochs",
        "2",
        "--eval-every",
        "3",
        "--output",
        "{tmp}/o",
        match="--eval-every) 3 is more than the 2 epochs",
    ),
    "train --eval-every without a test split": cli_row(
        "train",
        "vae_mnist",
        "--data",
        "{tmp}/train_only.npz",
        "--batch-size",
        "2",
        "--eval-every",
        "1",
        "--output",
        "{tmp}/o",
        match="--eval-every) measures on the test split",
        setup=_data_without_test_split,
    ),
    "train eval_every=0 (API)": api_row(
        lambda tmp: _train(tmp, eval_every=0),
        match="eval_every (--eval-every) must be a positive integer",
    ),
    "train eval_every=1.5 (API)": api_row(
        lambda tmp: _train(tmp, eval_every=1.5), match="(--eval-every)"
    ),
    "train eval_samples=1 (API)": api_row(
        lambda tmp: _train(tmp, eval_every=1, eval_samples=1),
        match="eval_samples (--eval-samples) must be an integer of at least 2",
    ),
    "train a batch that does not split across replicas (API)": api_row(
        lambda tmp: _train(tmp, batch_size=64, distribution=_ThreeReplicas()),
        match="does not split across 3 replicas",
    ),
    "train a batch larger than the data": cli_row(
        *TRAIN,
        "--batch-size",
        "100000000",
        "--output",
        "{tmp}/o",
        match="larger than the 60000",
        needs=MNIST,
    ),
    # --- Data (keras_gen.data): labels, arrays, IDX, images, tars. ---
    "faces labels with age and gender swapped on line 3": api_row(
        lambda tmp: data.load_labels("faces", "train", source=tmp / "faces.tar"),
        match="line 3: age 'female'",
        setup=_data_swapped_labels,
    ),
    "faces labels with a duplicated member": api_row(
        lambda tmp: data.load_labels("faces", "train", source=tmp / "faces.tar"),
        match="line 5: member 'images/000000.jpg' again",
        setup=_data_duplicate_member,
    ),
    "faces labels with a short row": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="line 4: 3 fields",
        setup=_data_short_row,
    ),
    "faces labels with split 'validation'": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="line 4: split 'validation'",
        setup=_data_unknown_split,
    ),
    "faces labels with a negative age": api_row(
        lambda tmp: data.load_labels("faces", "test", source=tmp / "faces.tar"),
        match="line 2: age '-1'",
        setup=_data_negative_age,
    ),
    "faces labels with gender 'M'": api_row(
        lambda tmp: data.load_labels("faces", "train", source=tmp / "faces.tar"),
        match="line 4: gender 'M'",
        setup=_data_unknown_gender,
    ),
    "faces labels naming an image not in the tar": api_row(
        lambda tmp: data.load_labels("faces", "train", source=tmp / "faces.tar"),
        match="line 5: member 'images/000009.jpg' is not in",
        setup=_data_missing_member,
    ),
    "faces tar with an image that has no labels row": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="such as 'images/000003.jpg'",
        setup=_data_unlisted_image,
    ),
    "mnist npz of floats in [0, 1]": api_row(
        lambda tmp: data.load_images("mnist", "train", source=tmp / "bad.npz"),
        match="(x * 255).round().astype('uint8')",
        setup=_data_float_npz,
    ),
    "mnist npz of int64 pixels": api_row(
        lambda tmp: data.load_images("mnist", "train", source=tmp / "bad.npz"),
        match="is int64, but images must be uint8",
        setup=_data_int64_npz,
    ),
    "mnist npz of flat images": api_row(
        lambda tmp: data.load_images("mnist", "train", source=tmp / "bad.npz"),
        match="x_train has shape (3136,)",
        setup=_data_flat_npz,
    ),
    "mnist npz of 32x32 images": api_row(
        lambda tmp: data.load_images("mnist", "train", source=tmp / "bad.npz"),
        match="mnist images must be (N, 28, 28)",
        setup=_data_wrong_size_npz,
    ),
    "mnist npz with label 10": api_row(
        lambda tmp: data.load_labels("mnist", "train", source=tmp / "bad.npz"),
        match="labels from 0 to 10",
        setup=_data_label_range_npz,
    ),
    "fashion IDX images and labels of different counts": api_row(
        lambda tmp: data.load_images("fashion_mnist", "train", source=tmp / "fashion"),
        match="holds 5 images but",
        setup=_data_idx_counts,
    ),
    "fashion IDX images with bytes after the data": api_row(
        lambda tmp: data.load_images("fashion_mnist", "train", source=tmp / "fashion"),
        match="28 bytes after",
        setup=_data_idx_oversized,
    ),
    "fashion IDX images and labels files swapped": api_row(
        lambda tmp: data.load_labels("fashion_mnist", "train", source=tmp / "fashion"),
        match="swapped",
        setup=_data_idx_swapped,
    ),
    "faces PNG of 20000x20000 (decompression bomb)": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="'images/bomb.png' is 20000x20000 pixels, over the limit",
        setup=_data_png_bomb,
    ),
    "faces PNG of 1x5000": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="'images/sliver.png' is 1x5000",
        setup=_data_sliver,
    ),
    "faces source of random bytes": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="faces.tar is not a tar archive or an image folder",
        setup=_data_random_tar,
    ),
    "faces tar without images": api_row(
        lambda tmp: data.load_images("faces", "train", source=tmp / "faces.tar"),
        match="faces.tar holds no images",
        setup=_data_empty_tar,
    ),
    "data.load with batch_size 0": api_row(
        lambda tmp: data.load("mnist", batch_size=0, source=tmp / "bad.npz"),
        match="batch_size must be a positive integer",
        setup=_data_npz,
    ),
    "data.load_labels of split 'validation'": api_row(
        lambda tmp: data.load_labels("mnist", "validation", source=tmp / "bad.npz"),
        match="unknown split 'validation'",
        setup=_data_npz,
    ),
    "train vae_mnist on an npz of floats": cli_row(
        "train",
        "vae_mnist",
        "--data",
        "{tmp}/bad.npz",
        "--output",
        "{tmp}/out",
        "--epochs",
        "1",
        match="bad.npz: x_train is float32",
        setup=_data_float_npz,
    ),
    "train dcgan_faces on random bytes": cli_row(
        "train",
        "dcgan_faces",
        "--data",
        "{tmp}/faces.tar",
        "--output",
        "{tmp}/out",
        "--epochs",
        "1",
        match="faces.tar is not a tar archive",
        setup=_data_random_tar,
    ),
    "train cvae_faces on labels with a duplicated member": cli_row(
        "train",
        "cvae_faces",
        "--data",
        "{tmp}/faces.tar",
        "--output",
        "{tmp}/out",
        "--epochs",
        "1",
        match="faces_labels.tsv line 5",
        setup=_data_duplicate_member,
    ),
    "train cgan_fashion_mnist on IDX files of different counts": cli_row(
        "train",
        "cgan_fashion_mnist",
        "--data",
        "{tmp}/fashion",
        "--output",
        "{tmp}/out",
        "--epochs",
        "1",
        match="train-labels-idx1-ubyte.gz",
        setup=_data_idx_counts,
    ),
    # --- Zoo (keras_gen.zoo): cards, names and paths, weights files. ---
    "zoo: card with batch_size as text": api_row(
        lambda tmp: zoo.card(tmp / "p"),
        setup=_zoo_batch_size_text,
        match='p/card.json: training.batch_size must be a positive integer, got "8"',
    ),
    "info: card with batch_size as text": cli_row(
        "info",
        "{tmp}/p",
        setup=_zoo_batch_size_text,
        match="training.batch_size must be a positive integer",
    ),
    "zoo: card without batch_size": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_no_batch_size,
        match="training.batch_size is missing",
    ),
    "zoo: card with a misspelt key": api_row(
        lambda tmp: zoo.card(tmp / "p"),
        setup=_zoo_typo_key,
        match="unknown key trainig. Did you mean 'training'?",
    ),
    "zoo: card of invalid JSON": api_row(
        lambda tmp: zoo.card(tmp / "p"),
        setup=_zoo_broken_json,
        match="p/card.json: invalid JSON at line 2",
    ),
    "info: card of invalid JSON": cli_row(
        "info",
        "{tmp}/p",
        setup=_zoo_broken_json,
        match="invalid JSON at line 2",
    ),
    "info: card that is a JSON list": cli_row(
        "info",
        "./p",
        setup=_zoo_json_list,
        match="the card must be a JSON object",
    ),
    "sample: card naming an unknown model class": cli_row(
        "sample",
        "{tmp}/p",
        "-o",
        "{tmp}/x.png",
        setup=_zoo_unknown_class,
        match="'StyleGAN' is an unknown model class",
    ),
    "zoo: card naming an unknown model class": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_unknown_class,
        match="unknown model class. Known classes: Classifier, ConditionalGAN",
    ),
    "zoo: config key the model does not take": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_config_typo,
        match="model.config.latent_dimm is not an argument of DCGAN",
    ),
    "sample: config value of the wrong type": cli_row(
        "sample",
        "{tmp}/p",
        "-o",
        "{tmp}/x.png",
        setup=_zoo_config_type,
        match="model.config.image_size must be an integer",
    ),
    "zoo: config value the model refuses": api_row(
        lambda tmp: zoo.load(tmp / "p", weights=False),
        setup=_zoo_config_value,
        match="p/card.json: DCGAN refuses model.config: image_size=15",
    ),
    "zoo: weights sha256 that is not hex": api_row(
        lambda tmp: zoo.card(tmp / "p"),
        setup=_zoo_bad_sha256,
        match='weights["model.weights.h5"].sha256 must be a sha256',
    ),
    "zoo: weights file name that is a path": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_weights_path,
        match="'../../model.weights.h5', which is not a plain file name",
    ),
    "zoo: figure file name that is a path": api_row(
        lambda tmp: zoo.card(tmp / "p"),
        setup=_zoo_figure_path,
        match="figures[0].file must be a file name",
    ),
    "zoo: weights linked to /dev/zero": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_weights_dev_zero,
        error=zoo.WeightsError,
        match="symlink (to /dev/zero)",
    ),
    "sample: weights linked to /dev/zero": cli_row(
        "sample",
        "{tmp}/p",
        "-o",
        "{tmp}/x.png",
        setup=_zoo_weights_dev_zero,
        match="model.weights.h5: it is a symlink",
    ),
    "zoo: weights that are a FIFO": api_row(
        lambda tmp: zoo.load(tmp / "p"),
        setup=_zoo_weights_fifo,
        error=zoo.WeightsError,
        match="it is a FIFO, not a regular file",
    ),
    "info: card that is a FIFO": cli_row(
        "info",
        "{tmp}/p",
        setup=_zoo_card_fifo,
        match="card.json: it is a FIFO",
    ),
    "zoo: record a metric that is not a number": api_row(
        lambda tmp: zoo.record_metrics(
            tmp / "p", [{"name": "fid", "value": None}], "-"
        ),
        setup=_zoo_weights_entry,
        match="metrics[0].value must be a number",
    ),
    "sample: bare name of a folder here": cli_row(
        "sample",
        "mine",
        "-o",
        "{tmp}/x.png",
        setup=_zoo_folder_here,
        match="did you mean ./mine?",
    ),
    "zoo: bare name of a folder here": api_row(
        lambda tmp: zoo.load("mine"),
        setup=_zoo_folder_here,
        match="did you mean ./mine?",
    ),
    "info: ./name of a shipped preset shadowed here": cli_row(
        "info",
        "./vae_mnist",
        setup=_zoo_shadow,
        match="vae_mnist/card.json: invalid JSON",
    ),
    "info: ./name of a shipped preset not here": cli_row(
        "info",
        "./vae_mnist",
        match="pass its bare name 'vae_mnist'",
    ),
    "zoo: folder that does not exist": api_row(
        lambda tmp: zoo.load(tmp / "nowhere"),
        match="nowhere: it does not exist",
    ),
    # --- Export and serving (keras_gen.export). ---
    "export: saved_model into the user's folder": api_row(
        lambda tmp: export.saved_model(_export_tiny(), tmp / "mine"),
        setup=_user_folder,
        match="mine",
    ),
    "export: saved_model over a file": api_row(
        lambda tmp: export.saved_model(_export_tiny(), tmp / "notes.txt"),
        setup=_user_file,
        match="notes.txt",
    ),
    "export: tflite into the user's folder": api_row(
        lambda tmp: export.tflite(_export_tiny(), tmp / "mine"),
        setup=_user_folder,
        match="mine",
    ),
    "export: tflite over a file": api_row(
        lambda tmp: export.tflite(_export_tiny(), tmp / "notes.txt"),
        setup=_user_file,
        match="notes.txt",
    ),
    "export: tflite quantize int4": api_row(
        lambda tmp: export.tflite(_export_tiny(), tmp / "lite", quantize="int4"),
        match="quantize must be one of none, float16, dynamic_range",
    ),
    "export: serving into a file": api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "notes.txt", "tiny"),
        setup=_user_file,
        match="notes.txt is not a folder",
    ),
    "export: serving over the user's models.config": api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "models", "tiny"),
        setup=_export_user_config,
        match="models.config",
    ),
    "export: serving version -1": api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "models", "tiny", version=-1),
        match="--version must be a positive integer, got -1",
    ),
    "export: serving version 0": api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "models", "tiny", version=0),
        match="--version must be a positive integer, got 0",
    ),
    'export: serving a model named q"x': api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "models", 'q"x'),
        match="""named 'q"x': use only letters, digits""",
    ),
    "export: serving a model named ..": api_row(
        lambda tmp: export.serving(_export_tiny(), tmp / "models", ".."),
        match="named '..'",
    ),
    "export: decode all-NaN latents": api_row(
        lambda tmp: _export_tiny("vae").decode(np.full((2, 3), np.nan, "float32")),
        match="latents must be finite numbers (no NaN or infinity); got 6 NaN",
    ),
    "export: decode infinite latents": api_row(
        lambda tmp: _export_tiny().decode(np.full((1, 4), np.inf, "float32")),
        match="latents must be finite numbers",
    ),
    "export: decode an empty batch": api_row(
        lambda tmp: _export_tiny().decode(np.zeros((0, 4), "float32")),
        match="latents: the batch is empty",
    ),
    "export: VAE score of 0..255 pixels": api_row(
        lambda tmp: _export_tiny("vae").score(np.full((2, 8, 8, 1), 255, "float32")),
        match="images must be in [0, 1] (no NaN); got values from 255 to 255",
    ),
    "export: VAE score of negative pixels": api_row(
        lambda tmp: _export_tiny("vae").score(np.full((2, 8, 8, 1), -5, "float32")),
        match="images must be in [0, 1]",
    ),
    "export: VAE encode of an empty batch": api_row(
        lambda tmp: _export_tiny("vae").encode(np.zeros((0, 8, 8, 1), "float32")),
        match="images: the batch is empty",
    ),
    "export: PixelCNN score of 0..255 pixels": api_row(
        lambda tmp: _export_tiny("pixelcnn").score(
            np.full((1, 6, 6, 1), 255, "float32")
        ),
        match="images must be in [0, 1]",
    ),
    "export: classifier of NaN pixels": api_row(
        lambda tmp: _export_tiny("classifier").probabilities(
            np.full((1, 8, 8, 1), np.nan, "float32")
        ),
        match="images must be in [0, 1] (no NaN); got 64 NaN",
    ),
    "export into the user's folder": cli_row(
        "export",
        "vae_mnist",
        "--output",
        "{tmp}/mine",
        match="mine",
        setup=_user_folder,
    ),
    "export over a file": cli_row(
        "export",
        "vae_mnist",
        "--output",
        "{tmp}/notes.txt",
        match="notes.txt",
        setup=_user_file,
    ),
    "export --format tflite into the user's folder": cli_row(
        "export",
        "vae_mnist",
        "--format",
        "tflite",
        "--output",
        "{tmp}/mine",
        match="mine",
        setup=_user_folder,
    ),
    "export --format serving into a file": cli_row(
        "export",
        "vae_mnist",
        "--format",
        "serving",
        "--output",
        "{tmp}/notes.txt",
        match="notes.txt is not a folder",
        setup=_user_file,
    ),
    "export --format serving over the user's models.config": cli_row(
        "export",
        "vae_mnist",
        "--format",
        "serving",
        "--output",
        "{tmp}/models",
        match="models.config",
        setup=_export_user_config,
    ),
    "export --format serving --version -1": cli_row(
        "export",
        "vae_mnist",
        "--format",
        "serving",
        "--version",
        "-1",
        "--output",
        "{tmp}/models",
        match="--version",
    ),
    "export --format serving --version 0": cli_row(
        "export",
        "vae_mnist",
        "--format",
        "serving",
        "--version",
        "0",
        "--output",
        "{tmp}/models",
        match="--version",
    ),
    'export --format serving of a preset folder named q"x': cli_row(
        "export",
        '{tmp}/q"x',
        "--format",
        "serving",
        "--output",
        "{tmp}/models",
        match='q"x',
        setup=_export_quoted_preset,
    ),
    # --- Training: flags, checkpoints, locks. ---
    # --- Image-to-image: translate, sample and paired data. ---
    "translate with a generative preset": cli_row(
        "translate",
        "dcgan_faces",
        "{tmp}/photo.png",
        "-o",
        "{tmp}/x.png",
        match="dcgan_faces is a DCGAN, which does not translate images",
        setup=_user_png,
    ),
    "translate with a preset not trained yet": cli_row(
        "translate",
        "{tmp}/recipe",
        "{tmp}/photo.png",
        "-o",
        "{tmp}/x.png",
        match="has no trained weights yet",
        setup=_untrained_translator,
    ),
    "translate an input that does not exist": cli_row(
        "translate",
        "{tmp}/p2p",
        "{tmp}/nothere.png",
        "-o",
        "{tmp}/x.png",
        match="nothere.png does not exist",
        setup=_translation_preset,
    ),
    "translate a folder as input": cli_row(
        "translate",
        "{tmp}/p2p",
        "{tmp}/p2p",
        "-o",
        "{tmp}/x.png",
        match="p2p is not a regular file",
        setup=_translation_preset,
    ),
    "translate a file that is not an image": cli_row(
        "translate",
        "{tmp}/p2p",
        "{tmp}/notes.txt",
        "-o",
        "{tmp}/x.png",
        match="cannot decode image",
        setup=_translation_preset,
    ),
    "translate over the user's PNG": cli_row(
        "translate",
        "{tmp}/p2p",
        "{tmp}/photo.png",
        "-o",
        "{tmp}/photo.png",
        match="photo.png",
        setup=_translation_preset,
    ),
    "sample --prompt for an image-to-image preset": cli_row(
        "sample",
        "{tmp}/p2p",
        "--prompt",
        "female",
        "-o",
        "{tmp}/x.png",
        match="not a conditional model",
        setup=_translation_preset,
    ),
    "paired inputs of an unknown kind": api_row(
        lambda tmp: data.paired("blur", np.zeros((1, 8, 8, 3), "float32")),
        match="unknown paired kind 'blur'; choose one of edges, grayscale",
    ),
    "paired inputs from grayscale targets": api_row(
        lambda tmp: data.paired("edges", np.zeros((1, 8, 8, 1), "float32")),
        match="makes inputs from RGB targets",
    ),
    "Pix2Pix translate of RGB where it reads sketches": api_row(
        lambda tmp: _export_tiny("pix2pix").translate(
            np.zeros((1, 8, 8, 3), "float32")
        ),
        match="translates inputs of shape (batch, 8, 8, 1), got (1, 8, 8, 3)",
    ),
    "Pix2Pix translate of 0..255 pixels": api_row(
        lambda tmp: _export_tiny("pix2pix").translate(
            np.full((1, 8, 8, 1), 255.0, "float32")
        ),
        match="inputs must be in [0, 1]",
    ),
    "Pix2Pix asked to generate": api_row(
        lambda tmp: _export_tiny("pix2pix").generate(4),
        match="Pix2Pix cannot generate images: it has no 'samples' capability",
    ),
    "Pix2Pix fit on images without targets": api_row(
        lambda tmp: _compiled_fit("pix2pix", np.zeros((4, 8, 8, 1), "float32")),
        match="trains on (inputs, targets) batches",
    ),
    "SuperResolution given a discriminator optimizer it does not have": api_row(
        lambda tmp: _export_tiny("super_resolution").compile(
            discriminator_optimizer="adam"
        ),
        match="has no discriminator (adversarial_weight=0)",
    ),
}


def _compiled_fit(family, *arrays):
    model = _export_tiny(family)
    model.compile()
    return model.fit(*arrays, batch_size=4, verbose=0)


def _tree_digest(*roots: Path) -> dict[str, str]:
    """path -> sha256 (files), "dir"/"fifo"/"link -> target" for the rest."""
    digest = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink():
                digest[str(path)] = f"link -> {os.readlink(path)}"
            elif path.is_fifo():
                digest[str(path)] = "fifo"
            elif path.is_file():
                digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest[str(path)] = "dir"
    return digest


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_refused_clearly(name, tmp_path, monkeypatch, capsys):
    row = ROWS[name]
    for needed in row.needs:
        if not Path(needed).exists():
            pytest.skip(f"needs {needed}")
    monkeypatch.chdir(tmp_path)
    if row.setup is not None:
        row.setup(tmp_path)
    before = _tree_digest(tmp_path, zoo.root())
    if row.call is not None:
        with pytest.raises(row.error) as raised:
            row.call(tmp_path)
        assert isinstance(raised.value, ValueError), type(raised.value)
        message = str(raised.value)
    else:
        argv = [word.format(tmp=tmp_path, shared=SHARED) for word in row.argv]
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        captured = capsys.readouterr()
        assert code == 2, (code, captured.err)
        assert "Traceback" not in captured.err
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        message = lines[-1]
        assert message.startswith("keras-gen"), captured.err
    assert row.match.lower() in message.lower(), message
    assert _tree_digest(tmp_path, zoo.root()) == before


def test_the_table_is_large():
    assert len(ROWS) >= 50
