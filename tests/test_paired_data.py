"""Paired datasets: each input made from its target by `data.paired`, checked against
hand computations, and the pipelines that feed (inputs, targets) batches."""

import io
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from keras_gen import data


def test_grayscale_is_bt601_luma_of_known_pixels():
    pixels = np.array(
        [[[[1, 0, 0], [0, 1, 0]], [[0, 0, 1], [0.2, 0.4, 0.6]]]], np.float32
    )
    expected = [[0.299, 0.587], [0.114, 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6]]
    found = data.paired("grayscale", pixels)
    assert found.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(found[0, ..., 0], expected, rtol=1e-6)
    # uint8 targets are divided by 255, as the pipelines do.
    white = data.paired("grayscale", np.full((1, 2, 2, 3), 255, np.uint8))
    np.testing.assert_allclose(white, 1.0, rtol=1e-6)


def test_downsample4_is_the_mean_of_each_4x4_block():
    targets = np.random.default_rng(0).random((2, 8, 12, 3)).astype(np.float32)
    expected = targets.reshape(2, 2, 4, 3, 4, 3).mean(axis=(2, 4))
    found = data.paired("downsample4", targets)
    assert found.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(found, expected, rtol=1e-6)


def square(size=32, low=8, high=24):
    """A white square on black, in RGB."""
    image = np.zeros((1, size, size, 3), np.float32)
    image[:, low:high, low:high] = 1.0
    return image


def test_edges_of_a_synthetic_square_lie_on_its_border_one_pixel_thin():
    sketch = np.asarray(data.paired("edges", square()))[0, ..., 0]
    assert set(np.unique(sketch)) == {0.0, 1.0}  # black lines on white
    rows, columns = np.nonzero(sketch == 0.0)
    # Every line pixel touches the square's border: the last row or column
    # outside it (7 or 24) or the first inside (8 or 23).
    border = {7, 8, 23, 24}
    on_border = np.isin(rows, list(border)) | np.isin(columns, list(border))
    inside_frame = (rows >= 7) & (rows <= 24) & (columns >= 7) & (columns <= 24)
    assert (on_border & inside_frame).all()
    # Away from the corners, each row crosses each vertical side once.
    for row in range(11, 21):
        assert len(np.nonzero(sketch[row] == 0.0)[0]) == 2, row
        assert sketch[row, 7:9].min() == 0.0 and sketch[row, 23:25].min() == 0.0


def test_a_uniform_image_and_its_frame_have_no_edges():
    flat = data.paired("edges", np.full((1, 16, 16, 3), 0.7, np.float32))
    np.testing.assert_array_equal(flat, 1.0)
    # A square in the corner: reflected borders draw no line along the frame, only
    # the square's own sides, which cross it at row or column 15.
    sketch = np.asarray(data.paired("edges", square(low=0, high=16)))[0, ..., 0]
    assert sketch[0, :14].min() == 1.0 and sketch[:14, 0].min() == 1.0
    assert sketch[:14, 15].max() == 0.0 and sketch[15, :14].max() == 0.0


@pytest.mark.parametrize("kind", data.PAIRED_KINDS)
def test_paired_shape_is_the_shape_paired_makes(kind):
    targets = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
    found = data.paired(kind, targets)
    assert tuple(found.shape[1:]) == data.paired_shape(kind, (16, 16, 3))
    assert found.dtype == tf.float32
    assert float(tf.reduce_min(found)) >= 0.0 and float(tf.reduce_max(found)) <= 1.0


@pytest.mark.parametrize("kind", data.PAIRED_KINDS)
def test_pipelines_feed_inputs_exactly_as_paired_makes_them(kind):
    images = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), np.uint8)
    for batches in (
        data.pipeline(images, batch_size=3, shuffle=False, pairs=kind),
        data.training_pipeline(images, batch_size=3, pairs=kind).take(2),
    ):
        for inputs, targets in batches:
            np.testing.assert_array_equal(inputs, data.paired(kind, targets))


def faces_tar(folder, count=6):
    """A tar of `count` 64x64 PNG faces, every third one a test image, with labels."""
    path = folder / "faces64.tar"
    rng = np.random.default_rng(3)
    rows = []
    with tarfile.open(path, "w") as archive:
        for i in range(count):
            pixels = rng.integers(0, 256, (64, 64, 3), np.uint8)
            payload = tf.io.encode_png(pixels).numpy()
            info = tarfile.TarInfo(f"images/{i:06d}.png")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
            rows.append(
                f"images/{i:06d}.png\t30\tfemale\t{'test' if i % 3 == 2 else 'train'}"
            )
    (folder / "faces64_labels.tsv").write_text(
        "member\tage\tgender\tsplit\n" + "\n".join(rows) + "\n"
    )
    return path


def test_paired_datasets_are_faces_with_inputs_made_on_the_fly(tmp_path):
    source = faces_tar(tmp_path)
    faces = data.load_images("faces", "test", source=source)
    for kind in data.PAIRED_KINDS:
        record = data.REGISTRY[f"faces_{kind}"]
        assert (record.kind, record.made_from, record.input_kind) == (
            "paired",
            "faces",
            kind,
        )
        assert data.input_kind(record.name) == kind
        # The same images and split as faces: they are the targets.
        np.testing.assert_array_equal(
            data.load_images(record.name, "test", source=source), faces
        )
        inputs, targets = next(
            iter(data.load(record.name, "test", shuffle=False, source=source))
        )
        np.testing.assert_array_equal(targets, faces / np.float32(255))
        np.testing.assert_array_equal(inputs, data.paired(kind, faces))
    assert data.input_kind("faces") is None


def test_paired_refuses_unknown_kinds_and_shapes():
    with pytest.raises(ValueError, match="unknown paired kind 'blur'; choose one of"):
        data.paired("blur", np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"RGB targets .* got shape \(1, 8, 8, 1\)"):
        data.paired("edges", np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="multiples of 4; got 10x8"):
        data.paired("downsample4", np.zeros((1, 10, 8, 3)))
    with pytest.raises(ValueError, match="takes no labels"):
        data.pipeline(
            np.zeros((2, 8, 8, 3), np.uint8), labels=np.zeros((2, 1)), pairs="edges"
        )
