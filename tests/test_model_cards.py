"""tools/model_cards.py: what the README's zoo table says of a preset's training."""

import pytest
import tool_scripts

HARDWARE = "2 CPU cores (x86_64), no GPU"


@pytest.fixture(scope="module")
def model_cards():
    return tool_scripts.load("model_cards")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(105, "2 min"), (359, "6 min"), (360, "0.1 h"), (3780, "1.1 h")],
)
def test_training_time_is_in_minutes_below_a_tenth_of_an_hour(
    model_cards, seconds, shown
):
    trained = {"epochs": 5, "wall_time_s": seconds, "hardware": HARDWARE}
    assert model_cards._when(trained) == f"5 epochs, {shown} on {HARDWARE}"


def test_a_fine_tuned_preset_counts_the_training_it_started_from(model_cards):
    parent = {"preset": "ddim_faces", "weights_sha256": "0" * 64, "steps": 3460}
    trained = {
        "epochs": 2,
        "wall_time_s": 1800,
        "hardware": HARDWARE,
        "init_from": {**parent, "wall_time_s": 9000},
    }
    assert model_cards._when(trained) == (
        f"2 epochs from ddim_faces's weights, 3.0 h in all on {HARDWARE}"
    )
