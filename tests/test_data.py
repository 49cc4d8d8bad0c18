import dataclasses
import gzip
import io
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import data, images


def jpeg(seed, size=64):
    pixels = np.random.default_rng(seed).integers(
        0, 256, (size, size, 3), dtype=np.uint8
    )
    return tf.io.encode_jpeg(pixels, quality=95).numpy()


def add(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


@pytest.fixture
def faces_tar(tmp_path):
    """Five faces, three train and two test, in the layout of faces64.tar."""
    path = tmp_path / "faces64.tar"
    with tarfile.open(path, "w") as archive:
        for i in range(5):
            add(archive, f"images/{i:06d}.jpg", jpeg(i))
    splits = ["train", "test", "train", "test", "train"]
    rows = [f"images/{i:06d}.jpg\t30\tmale\t{s}" for i, s in enumerate(splits)]
    (tmp_path / "faces64_labels.tsv").write_text(
        "member\tage\tgender\tsplit\n" + "\n".join(rows) + "\n"
    )
    return path


def test_faces_from_tar_follow_the_labels_split(faces_tar):
    train = data.load_images("faces", "train", source=faces_tar)
    test = data.load_images("faces", "test", source=faces_tar)
    assert train.shape == (3, 64, 64, 3) and test.shape == (2, 64, 64, 3)
    assert train.dtype == np.uint8
    expected = tf.io.decode_jpeg(jpeg(2)).numpy()
    np.testing.assert_array_equal(train[1], expected)


def test_faces_folder_is_resized_and_cropped_to_64(tmp_path):
    (tmp_path / "a.png").write_bytes(
        tf.io.encode_png(np.zeros((100, 80, 3), np.uint8)).numpy()
    )
    (tmp_path / "b.jpg").write_bytes(jpeg(1, size=64))
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_images("faces", "train", source=tmp_path)
    assert images.shape == (2, 64, 64, 3)
    with pytest.raises(data.DataSourceError, match="no labels file"):
        data.load_images("faces", "test", source=tmp_path)


def test_corrupt_image_is_reported_by_name(tmp_path):
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, "images/good.jpg", jpeg(0))
        add(archive, "images/broken.jpg", jpeg(1)[:50])
    with pytest.raises(ValueError, match="cannot decode image 'images/broken.jpg'"):
        data.load_images("faces", source=path)


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/evil.jpg"])
def test_unsafe_tar_member_is_refused(tmp_path, name):
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, name, jpeg(0))
    with pytest.raises(ValueError, match="unsafe member name"):
        data.load_images("faces", source=path)


def test_mnist_npz_and_environment_variable(tmp_path, monkeypatch):
    x_test = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=np.zeros((4, 28, 28), np.uint8),
        y_train=np.zeros(4),
        x_test=x_test,
        y_test=np.zeros(3),
    )
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path))
    images = data.load_images("mnist", "test", download=False)
    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(images[..., 0], x_test)


def write_idx(path, array):
    header = (
        b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    )
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())


def test_fashion_mnist_idx_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    loaded = data.load_images("fashion_mnist", "test", source=tmp_path)
    np.testing.assert_array_equal(loaded[..., 0], images)


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((5, 28, 28), np.uint8))
    with gzip.open(path) as file:
        payload = file.read()
    with gzip.open(path, "wb") as file:
        file.write(payload[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_no_source_names_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(data.DataSourceError) as error:
        data.load_images("mnist", download=False)
    message = str(error.value)
    assert str(tmp_path / "mnist.npz") in message
    assert "TFDS (not tried: download=False)" in message
    assert "source=PATH" in message and "KERAS_GEN_DATA" in message


def test_named_source_that_is_missing_never_downloads(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def no_download(*args, **kwargs):
        raise AssertionError("a missing --data must not start a download")

    monkeypatch.setattr(tfds, "load", no_download)
    for load in (data.load_images, data.load_labels):
        with pytest.raises(data.DataSourceError, match="missing.npz does not exist"):
            load("mnist", source=tmp_path / "missing.npz")


def test_faces_labels_come_from_local_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path))
    with pytest.raises(data.DataSourceError) as error:
        data.load_labels("faces")
    message = str(error.value)
    assert message.startswith("no labels for dataset 'faces'")
    assert str(tmp_path / "faces64.tar") in message and "TFDS" not in message
    assert data.REGISTRY["faces"].how_to_get in message


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="faces, mnist, fashion_mnist"):
        data.load_images("cifar")
    with pytest.raises(ValueError, match="train, test"):
        data.load_images("mnist", "validation")


def test_pipeline_batches_floats_in_unit_range():
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    batches = list(data.pipeline(images, batch_size=4, shuffle=False))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    np.testing.assert_allclose(np.concatenate(batches), images / 255.0, rtol=1e-6)
    shuffled = np.concatenate(list(data.pipeline(images, batch_size=4, seed=1)))
    assert not np.array_equal(shuffled, images / 255.0)
    np.testing.assert_allclose(
        np.sort(shuffled.ravel()), np.sort(images.ravel() / 255.0), rtol=1e-6
    )


def test_fixed_binarization_does_not_depend_on_order_or_batch_size():
    images = np.random.default_rng(0).integers(0, 256, (12, 4, 4, 1), dtype=np.uint8)
    once = np.concatenate(
        list(data.pipeline(images, batch_size=5, shuffle=False, binarize="fixed"))
    )
    again = np.concatenate(
        list(data.pipeline(images, batch_size=12, shuffle=False, binarize="fixed"))
    )
    assert set(np.unique(once)) <= {0.0, 1.0}
    np.testing.assert_array_equal(once, again)


def test_dynamic_binarization_differs_between_passes():
    images = np.full((64, 4, 4, 1), 128, np.uint8)
    dataset = data.pipeline(images, batch_size=64, shuffle=False, binarize="dynamic")
    first, second = next(iter(dataset)).numpy(), next(iter(dataset)).numpy()
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)
    assert 0.4 < first.mean() < 0.6


def test_tfds_fallback_crops_celeb_a_the_dcgan_way(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []

    def fake_load(name, split):
        calls.append((name, split))
        images = np.broadcast_to(
            np.arange(218, dtype=np.uint8)[:, None, None], (218, 178, 3)
        )
        return tf.data.Dataset.from_tensor_slices({"image": np.stack([images] * 3)})

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.delenv("KERAS_GEN_DATA", raising=False)
    faces = data.load_images("faces", "test")
    assert calls == [("celeb_a", "test")]
    assert faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8
    # Rows 20..197 survive the centre crop: the top row now reads about 20, the bottom about 197.
    assert 18 <= faces[0, 0, 0, 0] <= 24 and 193 <= faces[0, -1, 0, 0] <= 199


# --- Faces labels: matched by member and column name, every row checked ------------

HEADER = "member\tage\tgender\tsplit"


def write_faces(folder, table, members=5, name="faces.tar"):
    """A tar of `members` 64x64 JPEGs (images/00000i.jpg) and its labels file `table`."""
    path = folder / name
    with tarfile.open(path, "w") as archive:
        for i in range(members):
            add(archive, f"images/{i:06d}.jpg", jpeg(i))
    if table is not None:
        path.with_name(path.stem + "_labels.tsv").write_text(table)
    return path


def rows(*lines, header=HEADER):
    return "\n".join([header, *lines]) + "\n"


# Five members, distinct (age group, gender): train 0, 2, 4 and test 1, 3.
GOOD_ROWS = (
    "images/000000.jpg\t5\tfemale\ttrain",
    "images/000001.jpg\t20\tmale\ttest",
    "images/000002.jpg\t40\tmale\ttrain",
    "images/000003.jpg\t50\tfemale\ttest",
    "images/000004.jpg\t70\tfemale\ttrain",
)


def test_labels_are_looked_up_by_member_whatever_the_row_order(tmp_path):
    path = write_faces(tmp_path, rows(*reversed(GOOD_ROWS)))
    labels = data.load_labels("faces", "train", source=path)
    np.testing.assert_array_equal(labels, [[0, 0], [2, 1], [4, 0]])
    images = data.load_images("faces", "train", source=path)
    np.testing.assert_array_equal(images[1], tf.io.decode_jpeg(jpeg(2)).numpy())
    np.testing.assert_array_equal(
        data.load_labels("faces", "test", source=path), [[1, 1], [3, 0]]
    )


def test_labels_columns_are_found_by_name(tmp_path):
    """The same table with its columns in another order gives the same labels."""
    swapped = []
    for line in GOOD_ROWS:
        member, age, gender, split = line.split("\t")
        swapped.append(f"{split}\t{gender}\t{member}\t{age}")
    reordered = write_faces(
        tmp_path, rows(*swapped, header="split\tgender\tmember\tage"), name="b.tar"
    )
    plain = write_faces(tmp_path, rows(*GOOD_ROWS), name="a.tar")
    for split in data.SPLITS:
        np.testing.assert_array_equal(
            data.load_labels("faces", split, source=reordered),
            data.load_labels("faces", split, source=plain),
        )


@pytest.mark.parametrize(
    "table, match",
    [
        (rows(*GOOD_ROWS, GOOD_ROWS[2]), "line 7: member 'images/000002.jpg' again"),
        (rows(*GOOD_ROWS[:2], "images/000002.jpg\t40\tmale", *GOOD_ROWS[3:]), "line 4: 3 fields"),
        (rows(*GOOD_ROWS[:4], "images/000004.jpg\t70\tfemale\tvalid"), "line 6: split 'valid'"),
        (rows("images/000000.jpg\tfive\tfemale\ttrain", *GOOD_ROWS[1:]), "line 2: age 'five'"),
        (rows(GOOD_ROWS[0], "images/000001.jpg\t-3\tmale\ttest", *GOOD_ROWS[2:]), "line 3: age '-3'"),
        (rows(*GOOD_ROWS[:4], "images/000004.jpg\t250\tfemale\ttrain"), "line 6: age '250'"),
        (rows(*GOOD_ROWS[:2], "images/000002.jpg\t40\tM\ttrain", *GOOD_ROWS[3:]), "line 4: gender 'M'"),
        (rows("images/000000.jpg\tfemale\t5\ttrain", *GOOD_ROWS[1:]), "line 2: age 'female'"),
        (rows(*GOOD_ROWS, "images/000009.jpg\t9\tmale\ttrain"), "line 7: member 'images/000009.jpg' is not in"),
        (rows(*GOOD_ROWS[:4]), "1 images with no row in"),
        (rows(*GOOD_ROWS, header="member\tage\tgender"), "lacks the column split"),
        (rows(*GOOD_ROWS, header="member\tage\tage\tsplit"), "'age' appears twice"),
        (rows(*GOOD_ROWS[:1], "", "\t20\tmale\ttest", *GOOD_ROWS[2:]), "line 4: the member name is empty"),
    ],
)  # fmt: skip
def test_bad_labels_file_is_refused_naming_line_and_value(tmp_path, table, match):
    path = write_faces(tmp_path, table)
    with pytest.raises(data.DataError, match=match) as error:
        data.load_labels("faces", "train", source=path)
    assert "faces_labels.tsv" in str(error.value) or "faces.tar" in str(error.value)
    with pytest.raises(data.DataError, match=match):
        data.load_images("faces", "train", source=path)


def test_split_only_table_gives_images_but_no_labels(tmp_path):
    table = rows(
        *(f"images/{i:06d}.jpg\t{s}" for i, s in enumerate(data.SPLITS * 2)),
        header="member\tsplit",
    )
    path = write_faces(tmp_path, table, members=4)
    assert data.load_images("faces", "test", source=path).shape == (2, 64, 64, 3)
    with pytest.raises(data.DataError, match="line 1: no column age or gender"):
        data.load_labels("faces", "train", source=path)


def test_table_with_no_rows_in_a_split_is_a_missing_source(tmp_path):
    path = write_faces(tmp_path, rows(GOOD_ROWS[0]), members=1)
    with pytest.raises(data.DataSourceError, match="no images for split 'test'"):
        data.load_images("faces", "test", source=path)


def test_labels_file_with_a_byte_order_mark_is_read(tmp_path):
    path = write_faces(tmp_path, None)
    (tmp_path / "faces_labels.tsv").write_text(rows(*GOOD_ROWS), encoding="utf-8-sig")
    assert data.load_labels("faces", "test", source=path).shape == (2, 2)


def test_labels_file_that_is_not_utf8_is_refused(tmp_path):
    path = write_faces(tmp_path, None)
    (tmp_path / "faces_labels.tsv").write_bytes(b"member\tsplit\n\xff\xfe\ttrain\n")
    with pytest.raises(data.DataError, match="not a readable UTF-8"):
        data.load_images("faces", source=path)


# --- Faces sources: tars, folders, and what is not one -----------------------------


def test_random_bytes_as_faces_source_is_not_a_tar(tmp_path):
    path = tmp_path / "faces.tar"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(data.DataError, match="faces.tar is not a tar archive"):
        data.load_images("faces", source=path)


@pytest.mark.parametrize("members", [[], [("notes.txt", b"no faces here")]])
def test_tar_without_images_is_refused(tmp_path, members):
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        for name, payload in members:
            add(archive, name, payload)
    with pytest.raises(data.DataError, match="holds no images"):
        data.load_images("faces", source=path)


def test_source_that_is_neither_file_nor_folder_is_refused(tmp_path):
    os.mkfifo(tmp_path / "faces.tar")
    with pytest.raises(data.DataError, match="neither a file nor a folder"):
        data.load_images("faces", source=tmp_path / "faces.tar")


def test_folder_labels_table_is_labels_tsv(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg(0))
    (tmp_path / "b.jpg").write_bytes(jpeg(1))
    (tmp_path / "labels.tsv").write_text(rows("a.jpg\t30\tmale\ttrain"))
    with pytest.raises(data.DataError, match="no row in .*labels.tsv, such as 'b.jpg'"):
        data.load_images("faces", source=tmp_path)


# --- Image files: sized from the header before decoding ----------------------------


def png_header(width, height):
    """The first bytes of a PNG: enough to be sized, never decoded."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x02\0\0\0"
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4


def bmp(width, height):
    """A real 24-bit BMP, which TF decodes; rows padded to 4 bytes."""
    row = (width * 3 + 3) // 4 * 4
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 0, 0, 0, 0
    )
    head = b"BM" + struct.pack("<IHHI", 54 + row * height, 0, 0, 54)
    return head + info + b"\x80" * row * height


def with_jpeg_size(blob, width, height):
    """A JPEG whose frame header (SOF0) claims another size."""
    at = blob.index(b"\xff\xc0")
    return blob[: at + 5] + struct.pack(">HH", height, width) + blob[at + 9 :]


@pytest.mark.parametrize(
    "blob, size",
    [
        (png_header(640, 480), (640, 480)),
        (b"GIF89a" + struct.pack("<HH", 300, 200) + b"\0" * 10, (300, 200)),
        (bmp(8, 4), (8, 4)),
        (jpeg(0, size=32), (32, 32)),
        (with_jpeg_size(jpeg(0), 120, 90), (120, 90)),
    ],
)
def test_image_size_comes_from_the_header(blob, size):
    assert images._image_size("x", blob) == size


def test_progressive_jpeg_is_sized_too():
    pixels = np.zeros((48, 40, 3), np.uint8)
    blob = tf.io.encode_jpeg(pixels, progressive=True).numpy()
    assert images._image_size("x", blob) == (40, 48)


@pytest.mark.parametrize(
    "blob, match",
    [
        (png_header(20000, 20000), "20000x20000 pixels, over the limit of 16777216"),
        (with_jpeg_size(jpeg(0), 5000, 4000), "5000x4000 pixels, over the limit"),
        (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0" * 10, "65535x65535"),
        (bmp(1, 5), "1x5: its longer side is over 4 times"),
        (png_header(5000, 1), "5000x1: its longer side"),
        (png_header(0, 10), "has no pixels"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "not a JPEG, PNG, GIF or BMP"),
        (png_header(64, 64)[:20], "header is truncated or damaged"),
        (jpeg(1)[:50], "header is truncated or damaged"),
    ],
)
def test_bombs_and_slivers_are_refused_before_decoding(blob, match):
    with pytest.raises(images.ImageError, match=match):
        images.decode_images(["images/x.png"], [blob], size=64)


def test_bmp_decodes_and_bad_image_names_the_tar(tmp_path):
    assert images.decode_images(["a.bmp"], [bmp(8, 4)], 64).shape == (1, 64, 64, 3)
    path = tmp_path / "faces.tar"
    with tarfile.open(path, "w") as archive:
        add(archive, "images/good.jpg", jpeg(0))
        add(archive, "images/huge.png", png_header(20000, 20000))
    with pytest.raises(data.DataError, match=r"faces.tar: image 'images/huge.png'"):
        data.load_images("faces", source=path)


# --- Arrays (.npz) ------------------------------------------------------------------


def write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 9], np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": np.array([3, 4, 5], np.int64),
        **overrides,
    }
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_good_npz_loads_images_and_labels(tmp_path):
    path = write_npz(tmp_path / "mnist.npz")
    assert data.load_images("mnist", "train", source=path).shape == (4, 28, 28, 1)
    labels = data.load_labels("mnist", "test", source=path)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[3], [4], [5]])


@pytest.mark.parametrize(
    "x_train, match",
    [
        (np.full((4, 28, 28), 0.5, np.float32), r"\(x \* 255\).round\(\).astype\('uint8'\)"),
        (np.full((4, 28, 28), 200, np.int64), r"fit 0..255, so convert with x.astype"),
        (np.full((4, 28, 28), 300.0), r"values lie in \[300, 300\]"),
        (np.full((4, 28, 28), np.nan, np.float32), "NaN"),
        (np.zeros(4 * 28 * 28, np.uint8), r"shape \(3136,\)"),
        (np.zeros((4, 32, 32), np.uint8), r"shape \(4, 32, 32, 1\); mnist images must be"),
        (np.zeros((4, 28, 28, 3), np.uint8), r"shape \(4, 28, 28, 3\)"),
        (np.zeros((0, 28, 28), np.uint8), "holds no images"),
    ],
)  # fmt: skip
def test_bad_npz_images_are_refused(tmp_path, x_train, match):
    path = write_npz(tmp_path / "mnist.npz", x_train=x_train)
    with pytest.raises(data.DataError, match=match) as error:
        data.load_images("mnist", "train", source=path)
    assert "mnist.npz: x_train" in str(error.value)


@pytest.mark.parametrize(
    "y_train, match",
    [
        (np.array([[0], [1], [2], [3]]), r"shape \(4, 1\); labels must be 1-D"),
        (np.array([0.0, 1, 2, 3]), "float64; labels must be integer"),
        (np.array([0, 1, 2], np.uint8), "3 labels for 4 images"),
        (np.array([0, 1, 2, 10]), "labels from 0 to 10; mnist has 10 classes"),
        (np.array([-1, 1, 2, 3]), "labels from -1 to 3"),
    ],
)
def test_bad_npz_labels_are_refused(tmp_path, y_train, match):
    path = write_npz(tmp_path / "mnist.npz", y_train=y_train)
    with pytest.raises(data.DataError, match=match):
        data.load_labels("mnist", "train", source=path)


def test_unreadable_npz_is_refused(tmp_path):
    (tmp_path / "noise.npz").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(data.DataError, match="noise.npz is not a readable .npz"):
        data.load_images("mnist", source=tmp_path / "noise.npz")
    np.save(tmp_path / "one.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(data.DataError, match="single array"):
        data.load_images("mnist", source=tmp_path / "one.npy")
    path = write_npz(tmp_path / "partial.npz", x_test=None)
    with pytest.raises(data.DataError, match="has no array 'x_test'"):
        data.load_labels("mnist", "test", source=path)


def test_an_npz_without_a_split_is_a_missing_source_not_a_broken_file(tmp_path):
    # Training on a file without x_test works, and its measurement says there is no
    # test split, instead of failing after the training.
    path = write_npz(tmp_path / "train_only.npz", x_test=None, y_test=None)
    with pytest.raises(data.DataSourceError, match="has no test split"):
        data.load_images("mnist", "test", source=path)
    assert len(data.load_images("mnist", "train", source=path)) > 0


# --- IDX files (fashion_mnist) -------------------------------------------------------


def write_fashion(folder, images=None, labels=None):
    images = np.zeros((5, 28, 28), np.uint8) if images is None else images
    labels = np.arange(5, dtype=np.uint8) if labels is None else labels
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    return folder


def test_fashion_labels_load(tmp_path):
    write_fashion(tmp_path, labels=np.array([9, 0, 1, 2, 3], np.uint8))
    labels = data.load_labels("fashion_mnist", "test", source=tmp_path)
    np.testing.assert_array_equal(labels[:, 0], [9, 0, 1, 2, 3])


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (np.zeros((5, 27, 28), np.uint8), None, r"shape \(5, 27, 28, 1\)"),
        (
            np.zeros((5, 28 * 28), np.uint8),
            None,
            "images, \\(N, height, width\\) belong",
        ),
        (None, np.zeros((4,), np.uint8), "holds 5 images but .* 4 labels"),
        (None, np.zeros((5, 1), np.uint8), "labels, \\(N,\\) belong"),
    ],
)
def test_bad_idx_images_are_refused(tmp_path, images, labels, match):
    write_fashion(tmp_path, images, labels)
    with pytest.raises(data.DataError, match=match):
        data.load_images("fashion_mnist", "test", source=tmp_path)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 1, 2, 3, 10], np.uint8), "labels from 0 to 10"),
        (np.zeros(6, np.uint8), "6 labels for 5 images"),
        (np.zeros((5, 28, 28), np.uint8), "swapped"),
    ],
)
def test_bad_idx_labels_are_refused(tmp_path, labels, match):
    write_fashion(tmp_path, labels=labels)
    with pytest.raises(data.DataError, match=match):
        data.load_labels("fashion_mnist", "test", source=tmp_path)


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\x08\x03\0\0", "not an IDX file"),
        (b"\0\0\x0d\x01" + struct.pack(">I", 1) + b"\0" * 4, "type 0x0d"),
        (b"\0\0\x08\x03" + struct.pack(">I", 5), "truncated or empty IDX header"),
        (b"\0\0\x08\x00", "truncated or empty IDX header"),
        (
            b"\0\0\x08\x01" + struct.pack(">I", 2) + b"\1\2\3",
            "1 bytes after the 2 values",
        ),
    ],
)
def test_bad_idx_headers_and_bodies_are_refused(tmp_path, payload, match):
    path = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as file:
        file.write(payload)
    with pytest.raises(data.DataError, match=match):
        data.read_idx(path)


def test_idx_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"\0\0\x08\x03 not gzipped")
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.read_idx(path)


# --- Public arguments --------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True, "64", None])
def test_batch_size_must_be_a_positive_integer(batch_size):
    images = np.zeros((8, 4, 4, 1), np.uint8)
    for call in (
        lambda: data.pipeline(images, batch_size=batch_size),
        lambda: data.training_pipeline(images, batch_size=batch_size),
        lambda: data.load("mnist", batch_size=batch_size, source="/nonexistent"),
    ):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            call()


def test_numpy_integer_batch_size_is_fine():
    images = np.zeros((8, 4, 4, 1), np.uint8)
    assert next(iter(data.pipeline(images, batch_size=np.int64(4)))).shape[0] == 4


def test_labels_api_checks_dataset_and_split():
    with pytest.raises(
        ValueError, match="unknown split 'valid'; choose one of train, test"
    ):
        data.load_labels("mnist", "valid")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load_labels("cifar")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.class_names("cifar")
    with pytest.raises(ValueError, match="unknown split None"):
        data.load("mnist", None)


def test_pipelines_refuse_float_images_and_misaligned_labels():
    floats = np.full((8, 4, 4, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"uint8 array .* got float32"):
        data.pipeline(floats)
    with pytest.raises(ValueError, match=r"uint8 array .* shape \(8, 4, 4\)"):
        data.training_pipeline(np.zeros((8, 4, 4), np.uint8), batch_size=2)
    images = np.zeros((8, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=r"got shape \(7, 1\) for 8 images"):
        data.pipeline(images, labels=np.zeros((7, 1), np.int32))
    with pytest.raises(ValueError, match="binarize must be None, 'fixed' or 'dynamic'"):
        data.pipeline(images, binarize=True)


# --- TFDS, the online fallback -------------------------------------------------------


def test_tfds_imports_and_reports_its_own_failure_offline(tmp_path, monkeypatch):
    """TFDS reaches its download step (it used to die importing importlib_resources).

    The network is stubbed out where TFDS would open a URL, so the test is fast
    and offline; the error must be TFDS's, not a missing module.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import downloader

    def no_network(*args, **kwargs):
        raise ConnectionError("stubbed: no network in tests")

    monkeypatch.setattr(downloader, "_open_url", no_network)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tfds"))
    # No local copy anywhere, so the online fallback is what runs.
    offline = dataclasses.replace(data.REGISTRY["mnist"], root_names=(), fixed_paths=())
    monkeypatch.setitem(data.REGISTRY, "mnist", offline)
    with pytest.raises(data.DataSourceError) as error:
        data.load_images("mnist", download=True)
    message = str(error.value)
    assert "TFDS 'mnist' (ConnectionError: stubbed: no network" in message, message
    assert "ModuleNotFoundError" not in message


# --- The registry ----------------------------------------------------------------------


@pytest.mark.parametrize("name", data.DATASETS)
def test_every_registered_dataset_is_complete(name):
    """Each record says where its files are, how to read them and what its labels mean."""
    record = data.REGISTRY[name]
    assert record.name == name and record.kind in data.KINDS
    assert record.root_names, "no name to look for in the KERAS_GEN_DATA folder"
    assert len(record.how_to_get.split()) > 5, "say where to get the files"
    assert callable(record.read)
    if record.kind in ("images", "paired"):
        assert len(record.shape) == 3 and all(side > 0 for side in record.shape)
    # A label reader comes with its heads, each naming two or more distinct classes.
    assert (record.read_labels is None) == (not record.classes)
    for head, names in record.classes.items():
        assert len(names) > 1 and len(set(names)) == len(names), head
    if record.classes:
        assert data.class_names(name) == data.CLASSES[name] == dict(record.classes)
    assert record.tfds_name or not (record.tfds_labels or record.tfds_image)


def test_candidates_are_the_source_alone_or_the_data_folder_then_fixed_places(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_GEN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    record = data.REGISTRY["fashion_mnist"]
    assert record.candidates() == [
        tmp_path / "data" / "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
        tmp_path / ".keras" / "datasets" / "fashion-mnist",
    ]
    assert record.candidates(tmp_path / "mine") == [tmp_path / "mine"]
    monkeypatch.delenv("KERAS_GEN_DATA")
    assert data.REGISTRY["faces"].candidates() == []
