"""Rewrite every preset's README.md and README's zoo table from the cards.

Cards are the single source of truth: run this after editing or training a preset,
never edit the generated parts by hand.   python tools/model_cards.py
"""

import re
import sys
from pathlib import Path

from keras_gen import _files, zoo

BEGIN, END = "<!-- zoo table: tools/model_cards.py -->", "<!-- end zoo table -->"


def zoo_table() -> str:
    rows = [
        "| preset | model | data | trained | measured |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in zoo.list():
        card = zoo.card(name)
        trained = card.get("trained")
        when = (
            f"{trained['epochs']} epochs, {trained['wall_time_s'] / 3600:.1f} h on {trained['hardware']}"
            if trained
            else "not yet"
        )
        shown = [m for m in card.get("metrics", []) if _headline(m["name"])]
        measured = "<br>".join(f"{m['name']}: {m['value']:.4g}" for m in shown) or "-"
        rows.append(
            f"| [{name}](zoo/{name}/README.md) | {card['model']['class']} | "
            f"{card['data']['dataset']} ({card['data']['split']}) | {when} | {measured} |"
        )
    return "\n".join(rows)


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
        _files.write_text(
            zoo.root() / name / "README.md", zoo.model_card(zoo.card(name))
        )
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        print(f"README.md lacks the markers {BEGIN} ... {END}", file=sys.stderr)
        return 1
    _files.write_text(
        readme, pattern.sub(lambda _: f"{BEGIN}\n{zoo_table()}\n{END}", text)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
