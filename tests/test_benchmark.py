"""tools/benchmark.py's quick path on one tiny family, so the tool cannot rot."""

import json

import pytest
import tool_scripts


@pytest.fixture(scope="module")
def benchmark():
    return tool_scripts.load("benchmark")


def test_quick_run_writes_its_report_and_the_readme_tables(
    benchmark, tmp_path, monkeypatch
):
    # Steps shorter than SHORT_STEP_SECONDS are also timed in calls of several steps:
    # this tiny family's are (about a millisecond), unless a busy machine slows them.
    monkeypatch.setattr(benchmark, "SHORT_STEP_SECONDS", float("inf"))
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{benchmark.BEGIN}\nold table\n{benchmark.END}\nafter\n")
    family = "VAE (mlp)"
    report_path = tmp_path / "benchmark.json"
    arguments = ["--quick", "--families", family, "--skip", "xla"]
    arguments += ["--json", str(report_path), "--readme", str(readme)]
    assert benchmark.main(arguments) == 0

    report = json.loads(report_path.read_text())
    assert report["written_by"] == "keras_gen" and report["quick"] is True
    entry = report["families"][family]
    rates = entry["training"]["images_per_second"]
    assert rates["fit"] > 0 and rates["train_step_loop"] > 0
    # fit timed in calls of several steps too, and the table says so beside its ratio.
    assert rates[benchmark.FIT_PER_CALL] > 0
    by_round = entry["training"]["images_per_second_by_round"]
    assert by_round["fit"] == [rates["fit"]]  # one round in a quick run: its best
    sampling = entry["sampling"]
    assert sampling["signature"] == "decode"
    for batch in ("1", "4"):
        measured = sampling["ms_per_image"][batch]
        assert {"keras_generate", "keras_decode", "saved_model", "litert"} <= set(
            measured
        )
        assert all(value > 0 for value in measured.values())
    # Every runtime computed the Keras images of the same latents.
    assert max(sampling["max_abs_difference_from_keras"].values()) < 1e-4

    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n")
    assert "old table" not in text and f"| {family} (tiny" in text
    assert f"at {benchmark.STEPS_PER_CALL} steps a call)" in text
    # The tables come from the report alone.
    again = tmp_path / "again.md"
    again.write_text(f"{benchmark.BEGIN}\n{benchmark.END}\n")
    assert (
        benchmark.main(["--from-json", str(report_path), "--readme", str(again)]) == 0
    )
    assert benchmark.tables(report) in again.read_text()


def test_bad_arguments_are_one_line_and_exit_2(benchmark, capsys):
    assert benchmark.main(["--quick", "--families", "DCGAM"]) == 2
    assert benchmark.main(["--quick", "--skip", "cuda"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "DCGAM" in errors[0] and "cuda" in errors[1]
