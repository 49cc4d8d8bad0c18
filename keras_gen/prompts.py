"""Prompts over a dataset's labels: the words a user types -> the conditions a model takes.

Not free-form text-to-image. A conditional preset knows only the classes of the
dataset it was trained on (Fashion-MNIST's ten articles; a face's age group and
gender), so a prompt can only name those: "an old woman" is {"age": "65+",
"gender": "female"}; "smiling" names no label and is reported back, never
silently dropped or guessed at. The vocabulary of each dataset is below:

- every class name itself, for any dataset ("ankle boot", "65+", "female");
- fashion_mnist: synonyms of the ten classes (tee, top, pants, jeans, sweater,
  hoodie, jacket, gown, blouse, trainer, handbag, purse, boot, ...);
- faces: age-group words (baby, infant, toddler, child, kid -> 0-12; teenager,
  teen, young -> 13-29; adult -> 30-44; middle-aged -> 45-64; old, elderly,
  senior -> 65+) and gender words (woman, lady, female; man, guy, male); girl
  and boy also mean 0-12 unless the prompt names another age group ("young
  girl" is 13-29); grandma and grandpa are 65+ and a gender;
- mnist: the digits' names (zero .. nine);
- plurals of all of these ("boots", "dresses", "women", "children");
- filler words that name no label, ignored: see FILLER.

A vocabulary belongs to a head by its class names, so a model's conditions find
it whatever their head is called (cgan_fashion_mnist's head is `labels`).
"""

import dataclasses
import re

from keras_gen import data

# Words that name no label and that any prompt may hold.
FILLER = frozenset(
    (
        *("a", "an", "the", "of", "and", "with", "in", "on", "some", "please"),
        *("photo", "picture", "image", "portrait", "face", "person", "pair"),
        *("photos", "pictures", "images", "portraits", "faces", "people", "pairs"),
        *("digit", "digits", "number", "numbers", "handwritten"),
    )
)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What the words of one dataset's prompts name.

    `words`: phrase -> {head: class} it names. `implied`: phrase -> {head: class}
    it suggests when the prompt names no class of that head ("girl" -> age 0-12).
    Heads and classes are the dataset's (`data.CLASSES`).
    """

    dataset: str
    words: dict
    implied: dict = dataclasses.field(default_factory=dict)


def _naming(head: str, synonyms: dict) -> dict:
    """{phrase: {head: class}} from {class: "phrase, phrase, ..."}."""
    return {
        phrase.strip(): {head: name}
        for name, phrases in synonyms.items()
        for phrase in phrases.split(",")
    }


FACES = Vocabulary(
    "faces",
    words={
        **_naming(
            "age",
            {
                "0-12": "baby, infant, newborn, toddler, child, children, kid",
                "13-29": "teenager, teen, teenage, adolescent, young, youth, "
                "young adult",
                "30-44": "adult, grown-up",
                "45-64": "middle-aged, middle aged",
                "65+": "old, elderly, senior, aged, pensioner",
            },
        ),
        **_naming(
            "gender",
            {
                "female": "woman, women, lady, ladies, girl",
                "male": "man, men, gentleman, gentlemen, guy, boy",
            },
        ),
        # These name two heads: "young man" is a young adult and a man.
        **{
            phrase: {"age": "13-29", "gender": gender}
            for phrase, gender in {
                "young man": "male",
                "young men": "male",
                "young woman": "female",
                "young women": "female",
            }.items()
        },
        **{
            phrase: {"age": "65+", "gender": gender}
            for phrase, gender in {
                "grandma": "female",
                "grandmother": "female",
                "granny": "female",
                "grandpa": "male",
                "grandfather": "male",
            }.items()
        },
    },
    implied={"girl": {"age": "0-12"}, "boy": {"age": "0-12"}},
)

FASHION_MNIST = Vocabulary(
    "fashion_mnist",
    words=_naming(
        "class",
        {
            "t-shirt/top": "t-shirt, t shirt, tshirt, tee, top",
            "trouser": "trousers, pants, jeans, slacks",
            "pullover": "sweater, jumper, sweatshirt, hoodie",
            "dress": "gown, frock",
            "coat": "jacket, parka, overcoat",
            "sandal": "flip-flop",
            "shirt": "blouse",
            "sneaker": "trainer, running shoe, sports shoe",
            "bag": "handbag, purse, backpack, tote",
            "ankle boot": "boot, bootie",
        },
    ),
)

MNIST = Vocabulary(
    "mnist",
    words=_naming(
        "digit",
        {
            "0": "zero",
            "1": "one",
            "2": "two",
            "3": "three",
            "4": "four",
            "5": "five",
            "6": "six",
            "7": "seven",
            "8": "eight",
            "9": "nine",
        },
    ),
)

VOCABULARIES = (FACES, FASHION_MNIST, MNIST)


@dataclasses.dataclass
class _Meaning:
    named: dict  # model head -> class
    implied: dict


def parse(prompt: str, conditions: dict) -> tuple[dict, list[str]]:
    """(conditions named by `prompt`, its words not understood, in prompt order).

    `conditions` is the model's (head -> class names). Heads the prompt does not
    mention are left out of the result; a class named twice is fine, two classes
    of one head are a ValueError naming both words.

    Example:
        parse("an old woman smiling", faces_conditions)
        -> ({"age": "65+", "gender": "female"}, ["smiling"])
    """
    table = _phrases(conditions)
    longest = max((len(phrase) for phrase in table), default=1)
    tokens = _tokens(prompt)
    named, implied, not_understood = {}, {}, []
    position = 0
    while position < len(tokens):
        for size in range(min(longest, len(tokens) - position), 0, -1):
            phrase = tuple(tokens[position : position + size])
            if phrase in table:
                words = " ".join(phrase)
                _add(named, table[phrase].named, words)
                _add(implied, table[phrase].implied, words)
                position += size
                break
        else:
            if tokens[position] not in FILLER:
                not_understood.append(tokens[position])
            position += 1
    found = {head: name for head, (name, _) in implied.items()}
    found.update({head: name for head, (name, _) in named.items()})
    ordered = {head: found[head] for head in conditions if head in found}
    return ordered, not_understood


def vocabulary(conditions: dict) -> dict[str, dict[str, list[str]]]:
    """head -> class -> the phrases that name it (plurals aside): what `parse` reads."""
    understood = {
        head: {name: [] for name in names} for head, names in conditions.items()
    }
    for phrase, meaning in _phrases(conditions, plurals=False).items():
        for head, name in meaning.named.items():
            understood[head][name].append(" ".join(phrase))
    return understood


def _tokens(prompt: str) -> list[str]:
    """Lower-case words; punctuation but "-", "/" and "+" (as in "t-shirt/top", "65+")
    separates them."""
    return re.sub(r"[^\w\-/+]+", " ", str(prompt).lower()).split()


def _add(found: dict, meaning: dict, words: str) -> None:
    for head, name in meaning.items():
        if head in found and found[head][0] != name:
            earlier_name, earlier_words = found[head]
            raise ValueError(
                f"the prompt names two classes of {head}: {earlier_words!r} "
                f"({earlier_name}) and {words!r} ({name}); keep one"
            )
        found.setdefault(head, (name, words))


def _phrases(conditions: dict, plurals: bool = True) -> dict[tuple, _Meaning]:
    """Token tuple -> what it names, for these conditions: their class names and
    the vocabularies whose heads have the same classes, with plurals."""
    table = {}
    for vocabulary_ in VOCABULARIES:
        heads = _matching_heads(vocabulary_.dataset, conditions)
        for phrase, meaning in vocabulary_.words.items():
            named = {heads[h]: n for h, n in meaning.items() if h in heads}
            implied = {
                heads[h]: n
                for h, n in vocabulary_.implied.get(phrase, {}).items()
                if h in heads
            }
            if named:
                _enter(table, phrase, _Meaning(named, implied), plurals)
    for head, names in conditions.items():
        for name in names:
            _enter(table, name.lower(), _Meaning({head: name}, {}), plurals)
    return table


def _matching_heads(dataset: str, conditions: dict) -> dict[str, str]:
    """The dataset's head -> the model's head with the same class names."""
    by_classes = {tuple(names): head for head, names in conditions.items()}
    return {
        head: by_classes[tuple(names)]
        for head, names in data.CLASSES.get(dataset, {}).items()
        if tuple(names) in by_classes
    }


def _enter(table: dict, phrase: str, meaning: _Meaning, plurals: bool) -> None:
    tokens = tuple(_tokens(phrase))
    for form in (tokens, _plural(tokens)) if plurals else (tokens,):
        if form and form not in table:
            table[form] = meaning


def _plural(tokens: tuple) -> tuple:
    """The regular English plural of a phrase's last word; () if it has none here.

    Words that are plural already (pants, jeans) and the irregular ones (man,
    woman, child) have none: the vocabulary lists men, women and children.
    """
    last = tokens[-1] if tokens else ""
    if (
        not re.fullmatch(r"[a-z][a-z\-]*[a-z]", last)
        or last.endswith(("man", "men", "child"))
        or (last.endswith("s") and not last.endswith("ss"))
    ):
        return ()
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return (*tokens[:-1], last)
