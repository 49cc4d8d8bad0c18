import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_loads_presets_from_any_directory(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(dist),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = dist.glob("keras_gen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for preset in ("dcgan_faces", "vae_mnist"):
        for file in ("card.json", "README.md", "model.weights.h5", "samples.png"):
            assert f"keras_gen/_presets/{preset}/{file}" in names

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The wheel goes in the fresh venv; TensorFlow and the rest are borrowed from this one
    # (a .pth adds its site-packages after the fresh venv's own, and runs no editable hook).
    Path(site, "borrowed_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import keras_gen, sys\n"
        f"assert keras_gen.__file__.startswith({site!r}), keras_gen.__file__\n"
        "model = keras_gen.zoo.load('vae_mnist')\n"
        "print(tuple(model.generate(2, seed=0).shape))\n"
    )
    result = subprocess.run(
        [python, "-c", script],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(2, 28, 28, 1)")
    listing = subprocess.run(
        [venv / "bin" / "keras-gen", "list"],
        cwd=elsewhere,
        capture_output=True,
        check=False,
        text=True,
    )
    assert listing.returncode == 0 and "dcgan_faces" in listing.stdout, listing.stderr[
        -2000:
    ]
