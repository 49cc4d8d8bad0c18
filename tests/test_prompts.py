"""Prompts over a dataset's labels: vocabulary, synonyms, plurals, contradictions,
words not understood, and the strict reading of models without guidance."""

import re

import pytest

from keras_gen import cli, data, prompts

FACES = data.CLASSES["faces"]
# cgan_fashion_mnist calls its head "labels": the vocabulary follows the classes.
FASHION = {"labels": data.CLASSES["fashion_mnist"]["class"]}


@pytest.mark.parametrize(
    "prompt, expected, left",
    [
        ("an old woman smiling", {"age": "65+", "gender": "female"}, ["smiling"]),
        ("Elderly MEN", {"age": "65+", "gender": "male"}, []),
        ("a middle-aged man", {"age": "45-64", "gender": "male"}, []),
        ("middle aged ladies", {"age": "45-64", "gender": "female"}, []),
        ("teenager", {"age": "13-29"}, []),
        ("an adult", {"age": "30-44"}, []),
        ("babies", {"age": "0-12"}, []),
        ("children", {"age": "0-12"}, []),
        ("kids in hats", {"age": "0-12"}, ["hats"]),
        ("female 65+", {"age": "65+", "gender": "female"}, []),  # class names
        ("a woman", {"gender": "female"}, []),  # age left out: unconditioned
        ("smiling", {}, ["smiling"]),
        ("", {}, []),
    ],
)
def test_face_words_name_age_groups_and_genders(prompt, expected, left):
    assert prompts.parse(prompt, FACES) == (expected, left)


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("girl", {"age": "0-12", "gender": "female"}),  # girl and boy imply a child
        ("boys", {"age": "0-12", "gender": "male"}),
        (
            "a young girl",
            {"age": "13-29", "gender": "female"},
        ),  # unless an age is named
        ("an old boy", {"age": "65+", "gender": "male"}),
        ("young men", {"age": "13-29", "gender": "male"}),
        ("a young adult", {"age": "13-29"}),  # one phrase, not "young" and "adult"
        ("grandpa", {"age": "65+", "gender": "male"}),
        ("an old grandma", {"age": "65+", "gender": "female"}),  # said twice: fine
    ],
)
def test_words_that_name_two_heads_and_implications(prompt, expected):
    assert prompts.parse(prompt, FACES) == (expected, [])


@pytest.mark.parametrize(
    "prompt, match",
    [
        ("man woman", "two classes of gender: 'man' (male) and 'woman' (female)"),
        ("a girl and a guy", "two classes of gender"),
        ("an old baby", "two classes of age: 'old' (65+) and 'baby' (0-12)"),
        ("a young grandpa", "two classes of age"),
        ("boots and a bag", "two classes of labels"),
    ],
)
def test_contradictions_are_refused_naming_both_words(prompt, match):
    conditions = FASHION if "bag" in prompt else FACES
    with pytest.raises(ValueError, match=re.escape(match)) as raised:
        prompts.parse(prompt, conditions)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "prompt, name",
    [
        ("ankle boots", "ankle boot"),
        ("a boot", "ankle boot"),
        ("T-Shirt", "t-shirt/top"),
        ("t shirts", "t-shirt/top"),
        ("tees", "t-shirt/top"),
        ("t-shirt/top", "t-shirt/top"),
        ("shirts", "shirt"),  # not read as part of t-shirt
        ("a pair of jeans", "trouser"),
        ("trousers", "trouser"),
        ("dresses", "dress"),
        ("a hoodie", "pullover"),
        ("jackets", "coat"),
        ("running shoes", "sneaker"),
        ("handbags", "bag"),
        ("flip-flops", "sandal"),
    ],
)
def test_fashion_synonyms_and_plurals(prompt, name):
    assert prompts.parse(prompt, FASHION) == ({"labels": name}, [])


def test_unknown_words_come_back_in_order_and_other_datasets_take_class_names():
    assert prompts.parse("a red dress, please; striped", FASHION) == (
        {"labels": "dress"},
        ["red", "striped"],
    )
    digits = {"digit": data.CLASSES["mnist"]["digit"]}
    assert prompts.parse("the digit seven", digits) == ({"digit": "7"}, [])
    assert prompts.parse("Two", {"n": ("zero", "one", "two")}) == ({"n": "two"}, [])
    # Face words mean nothing to a model without the faces' classes.
    assert prompts.parse("old man", FASHION) == ({}, ["old", "man"])


def test_the_vocabulary_lists_what_parse_reads():
    words = prompts.vocabulary(FACES)
    assert words["age"]["65+"][:3] == ["old", "elderly", "senior"]
    assert "girl" in words["gender"]["female"] and "65+" in words["age"]["65+"]
    for head, classes in words.items():
        for name, phrases in classes.items():
            for phrase in phrases:
                assert prompts.parse(phrase, FACES)[0][head] == name


def test_a_model_without_guidance_needs_every_word_understood(tmp_path, capsys):
    out = tmp_path / "x.png"
    argv = ["sample", "cgan_fashion_mnist", "-n", "1", "-o", str(out)]
    assert cli.main([*argv, "--prompt", "smiling boots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not understood: smiling" in err and "ankle boot" in err
    assert not out.exists()
