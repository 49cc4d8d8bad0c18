"""Conditions: heads of class names, how a request names them, and the labels models read.

A conditional model's `conditions` maps each head to its class names, e.g.
{"age": ("0-12", ...), "gender": ("female", "male")}. Users name classes (or give
their indices) per head, one for every row or one per row; networks read labels,
int32 (batch, heads), one column per head in `conditions` order.
"""

import difflib

import numpy as np
import tensorflow as tf

# The methods that take **conditions have arguments of these names.
RESERVED_HEADS = ("num_samples", "seed", "latents", "images")


def checked_conditions(conditions) -> dict[str, tuple[str, ...]]:
    """A constructor's `conditions` as head -> tuple of distinct class names."""
    if not isinstance(conditions, dict) or not conditions:
        raise ValueError(
            "conditions must map each head to its class names, e.g. "
            f'{{"gender": ["female", "male"]}}; got {conditions!r}'
        )
    for head, names in conditions.items():
        if isinstance(names, str) or not names or len(set(names)) != len(names):
            raise ValueError(
                f"conditions[{head!r}] must be a list of distinct class names, "
                f"got {names!r}"
            )
        if head in RESERVED_HEADS:
            raise ValueError(
                f"a head cannot be named {head!r}: the methods that take conditions "
                f"have arguments {', '.join(RESERVED_HEADS)}"
            )
    return {
        str(head): tuple(str(name) for name in names)
        for head, names in conditions.items()
    }


def cycled_labels(num_samples: int, conditions: dict, requested: dict) -> tf.Tensor:
    """Labels, int32 (num_samples, heads), for `generate`.

    A head not requested cycles through every combination (sample i gets
    combination i in mixed radix, the first head fastest), so a grid shows each
    class in turn.
    """
    _refuse_unknown(conditions, requested)
    columns, stride = [], 1
    for head, names in conditions.items():
        if requested.get(head) is None:
            columns.append((np.arange(num_samples) // stride) % len(names))
            stride *= len(names)
        else:
            columns.append(_column(head, requested[head], names, num_samples))
    return tf.constant(np.stack(columns, axis=1), tf.int32)


def row_labels(count: int, conditions: dict, requested: dict) -> tf.Tensor:
    """Labels, int32 (count, heads), for a method that needs every head per row."""
    _refuse_unknown(conditions, requested)
    missing = [head for head in conditions if requested.get(head) is None]
    if missing:
        choices = "; ".join(f"{h}: {', '.join(n)}" for h, n in conditions.items())
        raise ValueError(
            f"missing condition {missing}: give every head ({', '.join(conditions)}) "
            f"a class name or index, one for all rows or one per row. {choices}"
        )
    columns = [_column(h, requested[h], n, count) for h, n in conditions.items()]
    return tf.constant(np.stack(columns, axis=1), tf.int32)


def per_class(
    conditions: dict, head: str | None, count: int, requested: dict
) -> tuple[dict, int]:
    """`requested` with `head` (None: the only head) set to each of its classes in
    turn, `count` samples each: a grid of `count` columns has a row per class.
    Returns the conditions and the number of samples they describe."""
    if head is None:
        if len(conditions) != 1:
            raise ValueError(
                f"this model has the heads {list(conditions)}: name the one to draw "
                "a row per class of"
            )
        (head,) = conditions
    _refuse_unknown(conditions, {head: None})
    if requested.get(head) is not None:
        raise ValueError(
            f"{head} is asked for a row per class and also fixed to "
            f"{requested[head]!r}; fix it in one place"
        )
    classes = len(conditions[head])
    rows = np.repeat(np.arange(classes), count)
    return {**requested, head: rows}, classes * count


def _refuse_unknown(conditions: dict, requested: dict) -> None:
    unknown = set(requested) - set(conditions)
    if unknown:
        raise ValueError(
            f"unknown condition {sorted(unknown)}; this model takes {list(conditions)}"
        )


def _column(head: str, value, names: tuple, count: int) -> np.ndarray:
    """Class indices (count,) of one head: a name or index for all rows, or one per row."""
    values = np.asarray(value)  # a name, an index, a list, an array or a tensor
    single = values.ndim == 0
    if not single and len(values) != count:
        raise ValueError(
            f"{head}: got {len(values)} values for {count} samples; "
            "give one value, or one per sample"
        )
    if values.dtype.kind not in "iu":  # names, or names and indices mixed
        each = [value] * count if single else list(value)
        return np.array([_class_index(head, v, names) for v in each])
    values = np.broadcast_to(values, (count,))
    bad = values[(values < 0) | (values >= len(names))]
    if len(bad):
        raise _out_of_range(head, int(bad[0]), names)
    return values


def _class_index(head: str, value, names: tuple) -> int:
    if isinstance(value, str):
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {head} {value!r}.{hint} Choose from: {', '.join(names)}"
            )
        return names.index(value)
    index = int(value)
    if not 0 <= index < len(names):
        raise _out_of_range(head, index, names)
    return index


def _out_of_range(head: str, index: int, names) -> ValueError:
    return ValueError(
        f"{head} index {index} is out of range; there are {len(names)} classes: "
        f"{', '.join(names)}"
    )


def checked_labels(labels, conditions: dict, count=None) -> tf.Tensor:
    """Labels as int32 (batch, heads), every index in range for its head.

    With one head, labels of shape (batch,) are accepted too. `count` is the batch
    size the labels must match. Eagerly a bad request is a ValueError; in a graph
    (training, exported signatures) it fails an assertion, so an out-of-range
    label is never silently read as "no class".
    """
    labels = tf.convert_to_tensor(labels)
    heads = len(conditions)
    if not labels.dtype.is_integer:
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 1 and heads == 1:
        labels = labels[:, None]
    if labels.shape.rank != 2 or labels.shape[-1] != heads:
        raise ValueError(
            f"expected labels of shape (batch, {heads}), one column per head "
            f"({', '.join(conditions)}), got {tuple(labels.shape)}"
        )
    if tf.executing_eagerly():
        return _eagerly_checked(labels, conditions, count)
    return _graph_checked(labels, conditions, count)


def _eagerly_checked(labels, conditions: dict, count) -> tf.Tensor:
    if count is not None and labels.shape[0] != int(count):
        raise ValueError(f"got {labels.shape[0]} labels for {int(count)} inputs")
    values = labels.numpy()
    for column, (head, names) in enumerate(conditions.items()):
        bad = values[(values[:, column] < 0) | (values[:, column] >= len(names))]
        if len(bad):
            raise _out_of_range(head, int(bad[0, column]), names)
    return labels


def _graph_checked(labels, conditions: dict, count) -> tf.Tensor:
    ranges = ", ".join(f"{h} 0..{len(n) - 1}" for h, n in conditions.items())
    message = f"labels out of range; valid: {ranges}"
    sizes = tf.constant([len(names) for names in conditions.values()], tf.int32)
    checks = [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, sizes, message=message),
    ]
    if count is not None:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(labels)[0],
                tf.cast(count, tf.int32),
                message="the batch needs one row of labels per input",
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def one_hot(labels, conditions: dict) -> tf.Tensor:
    """Checked labels (batch, heads) -> float32 (batch, total classes): a one-hot per head."""
    return tf.concat(
        [
            tf.one_hot(labels[:, column], len(names))
            for column, names in enumerate(conditions.values())
        ],
        axis=-1,
    )


def beside_codes(features, labels, conditions: dict) -> tf.Tensor:
    """[features, one-hot codes] side by side: what a conditional network reads."""
    codes = one_hot(labels, conditions)
    return tf.concat([features, tf.cast(codes, features.dtype)], -1)


def code_size(conditions: dict) -> int:
    """The width of `one_hot`'s codes: the number of classes over all heads."""
    return sum(len(names) for names in conditions.values())
