"""The wheel installs from the index on every Python that setup.cfg allows, and samples.

Installing TensorFlow for each Python is the expensive part, so the wheel is built once
and the fresh virtual environments are filled concurrently by uv (parallel downloads, a
shared cache hard-linked into each environment) before the per-Python tests run.
"""

import concurrent.futures
import configparser
import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
SETUP = configparser.ConfigParser()
SETUP.read(REPO / "setup.cfg")
PYTHON_REQUIRES = SpecifierSet(SETUP["options"]["python_requires"])
SUPPORTED_PYTHONS = [
    f"3.{minor}" for minor in range(30) if f"3.{minor}" in PYTHON_REQUIRES
]
UV = [sys.executable, "-m", "uv"]
INSTALL_TIMEOUT = 900  # seconds; a cold cache downloads TensorFlow once per Python.


def _run(command, **kwargs):
    return subprocess.run(
        command, capture_output=True, text=True, check=False, **kwargs
    )


def _outside_the_repository():
    """The environment without PYTHONPATH, so nothing can import the source tree."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def _find_python(version: str) -> str | None:
    """The real path of the interpreter `python<version>`, or None if it does not run.

    A pyenv shim is on PATH for every version pyenv has installed, but runs only the
    versions selected by `pyenv global`; naming the version in PYENV_VERSION makes the
    shim run it (other launchers ignore the variable). The interpreter then reports its
    own path, which uv uses without going through the shim again.
    """
    launcher = shutil.which(f"python{version}")
    if launcher is None:
        return None
    probe = _run(
        [launcher, "-c", "import sys; print(*sys.version_info[:2], sys.executable)"],
        env={**os.environ, "PYENV_VERSION": version},
    )
    if probe.returncode != 0:
        return None
    major, minor, executable = probe.stdout.split(maxsplit=2)
    return executable.strip() if f"{major}.{minor}" == version else None


def _install(wheel: Path, python: str, venv: Path) -> str | None:
    """Install the wheel and its install_requires (resolved from the index) into a new
    virtual environment; returns the end of uv's log if that failed, None if it worked.
    """
    steps = (
        [*UV, "venv", "--quiet", "--python", python, str(venv)],
        [*UV, "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
    )
    for step in steps:
        try:
            result = _run(step, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"{' '.join(step)} took over {INSTALL_TIMEOUT} s"
        if result.returncode != 0:
            return f"{' '.join(step)}\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    built = _run([*UV, "build", "--wheel", "--out-dir", str(dist), str(REPO)])
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = dist.glob("keras_gen-*.whl")
    return wheel


@pytest.fixture(scope="module")
def environments(wheel, tmp_path_factory):
    """For each supported version: (venv, None), (None, uv's error) or (None, None) when
    that Python is not on this machine. The installs run concurrently: they wait on the
    network and the disk far more than on the two cores."""
    root = tmp_path_factory.mktemp("venvs")
    pythons = {version: _find_python(version) for version in SUPPORTED_PYTHONS}
    found = {version: python for version, python in pythons.items() if python}
    with concurrent.futures.ThreadPoolExecutor(max(len(found), 1)) as pool:
        installs = {
            version: pool.submit(_install, wheel, python, root / f"python{version}")
            for version, python in found.items()
        }
    environments = dict.fromkeys(SUPPORTED_PYTHONS, (None, None))
    for version, install in installs.items():
        failure = install.result()
        environments[version] = (
            (None, failure) if failure else (root / f"python{version}", None)
        )
    yield environments
    # TensorFlow is some 2 GB per environment: left for pytest's rotation of its
    # temporary folders, a few runs would fill a small disk.
    shutil.rmtree(root, ignore_errors=True)


def test_classifiers_name_exactly_the_pythons_that_python_requires_allows():
    prefix = "Programming Language :: Python :: "
    classifiers = SETUP["metadata"]["classifiers"].strip().splitlines()
    named = [c.removeprefix(prefix) for c in classifiers if c.startswith(prefix + "3.")]
    assert named == SUPPORTED_PYTHONS
    # TensorFlow ships wheels for a closed range of Pythons, so ours is closed too.
    assert "3.99" not in PYTHON_REQUIRES


@pytest.mark.slow
def test_wheel_ships_every_preset_file(wheel):
    patterns = [
        pattern.strip()
        for pattern in SETUP["options.package_data"]["keras_gen._presets"].split(",")
    ]
    excluded = SETUP["options.exclude_package_data"]["keras_gen._presets"]
    shipped = set(zipfile.ZipFile(wheel).namelist())
    zoo = REPO / "zoo"
    relative_paths = (path.relative_to(zoo).as_posix() for path in zoo.glob("*/*"))
    preset_files = [
        relative
        for relative in sorted(relative_paths)
        if any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)
        and not fnmatch.fnmatch(relative, excluded)
    ]
    assert "vae_mnist/model.weights.h5" in preset_files
    missing = [f for f in preset_files if f"keras_gen/_presets/{f}" not in shipped]
    assert not missing
    # A checkpoint beside a preset (zoo/NAME.train-state) is never shipped.
    assert not [name for name in shipped if ".train-state/" in name]


@pytest.mark.slow
@pytest.mark.parametrize("version", SUPPORTED_PYTHONS)
def test_wheel_installs_with_its_dependencies_and_samples(
    version, environments, tmp_path
):
    venv, failure = environments[version]
    if failure:
        pytest.fail(f"installing the wheel on Python {version} failed:\n{failure}")
    if venv is None:
        message = f"python{version} is not on this machine (PATH, or pyenv)"
        if os.environ.get("CI"):
            # CI's machine has every supported Python: a missing one would shrink the
            # coverage silently, so it is an error there and a skip on a laptop.
            pytest.fail(message)
        pytest.skip(message)

    # Run from a directory outside the repository, so only the installed wheel is found.
    environment = _outside_the_repository()
    location = _run(
        [
            venv / "bin" / "python",
            "-c",
            # The TFDS online fallback needs importlib_resources on some Pythons.
            (
                "import importlib.util as u, tensorflow_datasets as t; "
                "type(t.builder('mnist')).code_path; "
                "print(u.find_spec('keras_gen').origin)"
            ),
        ],
        cwd=tmp_path,
        env=environment,
    )
    assert location.stdout.startswith(str(venv)), location.stdout + location.stderr
    command = "sample vae_mnist --num-samples 4 --seed 0 --output samples.png"
    sampled = _run(
        [venv / "bin" / "keras-gen", *command.split()],
        cwd=tmp_path,
        env=environment,
    )
    assert sampled.returncode == 0, sampled.stderr[-4000:]
    assert (tmp_path / "samples.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
