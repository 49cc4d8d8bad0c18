"""Rewrite every preset's README.md, the figures drawn from its metrics, and
README's zoo table from the cards.

Cards are the single source of truth: run this after editing or training a preset,
never edit the generated parts by hand.   python tools/model_cards.py
"""

import re
import sys
from pathlib import Path

from keras_gen import _files, zoo

BEGIN, END = "<!-- zoo table: tools/model_cards.py -->", "<!-- end zoo table -->"
MNIST_BEGIN = "<!-- mnist table: tools/model_cards.py -->"
MNIST_END = "<!-- end mnist table -->"
# The columns of the MNIST comparison: heading -> how the card's metric name begins.
MNIST_COLUMNS = {
    "test NLL, nats": "test negative log-likelihood, nats",
    "FID": "FID (classifier_mnist)",
    "digits covered of 10": "digit classes covered of 10",
    "KL(generated ‖ data digits), nats": "digit KL(generated || data classes)",
}


def zoo_table() -> str:
    rows = [
        "| preset | model | data | trained | measured |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in zoo.list():
        card = zoo.card(name)
        trained = card.get("trained")
        when = _when(trained) if trained else "not yet"
        shown = [m for m in card.get("metrics", []) if _headline(m["name"])]
        measured = "<br>".join(f"{m['name']}: {m['value']:.4g}" for m in shown) or "-"
        rows.append(
            f"| [{name}](zoo/{name}/README.md) | {card['model']['class']} | "
            f"{card['data']['dataset']} ({card['data']['split']}) | {when} | {measured} |"
        )
    return "\n".join(rows)


def _when(trained: dict) -> str:
    """How long a preset trained; a fine-tuned one's time includes its start's."""
    parent = trained.get("init_from", {})
    seconds = trained["wall_time_s"] + parent.get("wall_time_s", 0)
    took = f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.0f} min"
    start = f" from {parent['preset']}'s weights" if parent else ""
    in_all = " in all" if parent else ""
    return f"{trained['epochs']} epochs{start}, {took}{in_all} on {trained['hardware']}"


def mnist_table() -> str:
    """The generative MNIST presets side by side: the articles' models and the others."""
    rows = [
        "| preset | model | " + " | ".join(MNIST_COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in MNIST_COLUMNS) + " |",
    ]
    cards = [zoo.card(name) for name in zoo.list()]
    cards = [
        card
        for card in cards
        if card["data"]["dataset"] == "mnist" and card["model"]["class"] != "Classifier"
    ]
    for card in cards:
        found = [_first_value(card, start) for start in MNIST_COLUMNS.values()]
        name = card["name"]
        rows.append(
            f"| [{name}](zoo/{name}/README.md) | {_model_name(card)} | "
            + " | ".join(found)
            + " |"
        )
    # The same measures of real test images against the training set: the floor.
    floor = "floor (real test vs train): "
    found = [
        next(
            (v for card in cards if (v := _first_value(card, floor + start)) != "-"),
            "-",
        )
        for start in MNIST_COLUMNS.values()
    ]
    rows.append("| real test images (floor) | - | " + " | ".join(found) + " |")
    return "\n".join(rows)


def _first_value(card: dict, start: str) -> str:
    """The value of the card's first metric named `start`..., or "-"."""
    for metric in card.get("metrics", []):
        if metric["name"].startswith(start):
            return f"{metric['value']:.4g}"
    return "-"


def _model_name(card: dict) -> str:
    network = card["model"]["config"].get("network", "convolutional")
    return card["model"]["class"] + (
        "" if network == "convolutional" else f" ({network})"
    )


def replace_between(text: str, begin: str, end: str, table: str) -> str | None:
    """`text` with the table between the markers replaced; None if they are missing.

    Shared by every tool that writes a generated table into README.md
    (tools/benchmark.py too)."""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        print(f"README.md lacks the markers {begin} ... {end}", file=sys.stderr)
        return None
    return pattern.sub(lambda _: f"{begin}\n{table}\n{end}", text)


def _headline(name: str) -> bool:
    """The few numbers the table shows; the model cards list every one."""
    return (
        name.startswith(
            (
                "FID (",
                "floor (real test vs train): FID (",
                "test negative log-likelihood",
            )
        )
        or (name.startswith("test ") and "accuracy" in name)
        or (name.startswith("classifier agrees") and "mean over classes" in name)
    )


def main() -> int:
    for name in zoo.list():
        if drawn := zoo.steps_tradeoff_figure(zoo.card(name)):
            zoo.record_figure(name, drawn[0], *drawn[1])
        _files.write_text(
            zoo.root() / name / "README.md", zoo.model_card(zoo.card(name))
        )
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    for begin, end, table in (
        (BEGIN, END, zoo_table()),
        (MNIST_BEGIN, MNIST_END, mnist_table()),
    ):
        text = replace_between(text, begin, end, table)
        if text is None:
            return 1
    _files.write_text(readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
