"""Every shipped preset gives what it gave before the family-contract refactor.

`golden/presets_before_refactor.npz` holds, from commit b42c4d1 (before the
refactor): `generate(8, seed=0)` of every generative preset, and every classifier
preset's class probabilities for 8 fixed random images. The weights files are
loaded unchanged. Tolerances cover CPU kernel differences, not behaviour changes.
A preset retrained since has its entries recorded again from its new weights, in the
commit that ships them (classifier_fashion_mnist: the one where its test accuracy
went from 0.893 to 0.934; cgan_fashion_mnist: the one shipping its retrained weights,
the one where it began to sample at truncation 1.0, and the one shipping its rerun
with a training curve; vae_mnist: the one shipping its residual 30-epoch retrain;
pixelcnn_mnist: the one shipping its 8-epoch, 12-layer retrain; cvae_faces: the one
shipping its beta-4, 20-epoch retrain; wgan_gp_faces: the one shipping its 36-epoch
retrain with a generator average), so later changes stay guarded.
"""

from pathlib import Path

import numpy as np
import pytest

from keras_gen import zoo

GOLDEN = Path(__file__).parent / "golden" / "presets_before_refactor.npz"


def _golden():
    with np.load(GOLDEN) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _presets_before_refactor() -> list[str]:
    """The presets the golden file holds; presets added since have no "before"."""
    with np.load(GOLDEN) as arrays:
        return sorted({key.split("/")[0] for key in arrays.files})


@pytest.mark.parametrize("name", _presets_before_refactor())
def test_preset_outputs_are_unchanged(name):
    golden = _golden()
    model = zoo.load(name)
    if name in golden:
        found = np.asarray(model.generate(8, seed=0))
        if name.startswith("pixelcnn"):
            # Binary pixels drawn by comparing uniforms with probabilities: a rounding
            # difference flips one pixel only when the two are within ~1e-6.
            assert np.mean(found == golden[name]) > 0.98
        else:
            np.testing.assert_allclose(found, golden[name], atol=1e-4)
        return
    probabilities = model.probabilities(golden[f"{name}/input"])
    for head, found in probabilities.items():
        np.testing.assert_allclose(found, golden[f"{name}/{head}"], atol=1e-4)
