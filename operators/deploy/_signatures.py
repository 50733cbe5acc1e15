"""The serving functions of a bundle: raw input → recorded preprocessing → model → outputs.

Two endpoints, both with TensorFlow ops only, so the SavedModel needs nothing else:

- ``serving_default`` takes raw features exactly as the data was collected (one tensor
  named ``features``, or one tensor per named feature for tabular rows; strings for
  text) and answers ``scores`` (and ``class_ids`` for classifiers). A feature whose name
  TensorFlow would rename (``od280/od315``) gets a unique name of its own in the
  SavedModel (see :func:`signature_names`), recorded in the model card.
- ``serving_images`` (image models only, see :func:`is_image`) takes encoded images (PNG,
  JPEG, GIF or BMP, any size), decodes them, converts them to the raw feature spec (see
  :func:`image_to_raw`) and then does what ``serving_default`` does.

Images are decoded to RGB whatever the model's channels: TensorFlow's decoders take
``channels=1`` for PNG and JPEG only (not GIF, BMP or CMYK JPEG). A grayscale model's
images are then converted with the weights and rounding of ``process.decode_image``
(:class:`~rxpipe.operators.process._image_steps.Grayscale`), so serving sees the pixels
training saw.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rxpipe.batch import FeatureSpec
from rxpipe.preprocessing import Preprocessor
from rxpipe.serving.bundle import DEFAULT_SIGNATURE, IMAGE_INPUT, IMAGE_SIGNATURE, SINGLE_INPUT

from ..process._image_steps import Grayscale, decode_rgb_tf

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

_STRING_DTYPES = frozenset({"str", "object", "bytes"})


def input_specs(raw: FeatureSpec | Mapping[str, FeatureSpec]) -> dict[str, FeatureSpec]:
    """The raw inputs by signature input name: ``{"features": spec}`` for one array."""
    return {SINGLE_INPUT: raw} if isinstance(raw, FeatureSpec) else dict(raw)


_SIGNATURE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""A name TensorFlow keeps as it is for a signature input (and its placeholder op)."""


def signature_names(raw: FeatureSpec | Mapping[str, FeatureSpec]) -> dict[str, str]:
    """The SavedModel's input name for each raw input, unique, by raw input name.

    TensorFlow renames a signature input that is not a Python identifier of ASCII
    letters, digits and ``_`` (``od280/od315`` becomes ``od280_od315``), and fails the
    export when two names become one (``a/b`` and ``a_b``). So a name that TensorFlow
    keeps is kept; any other gets its characters other than ASCII letters, digits and
    ``_`` replaced by ``_`` (``input_`` before it unless it starts with a letter), and a
    suffix ``_2``, ``_3``... if that name is taken. The model card records the names
    (:class:`~rxpipe.serving.bundle.Bundle` serves the raw names).

    Example:
        >>> spec = FeatureSpec((), "float32")
        >>> signature_names({"a/b": spec, "a_b": spec, "1st": spec, "größe": spec})
        {'a/b': 'a_b_2', 'a_b': 'a_b', '1st': 'input_1st', 'größe': 'gr__e'}
        >>> signature_names(FeatureSpec((4,), "float32"))
        {'features': 'features'}
    """
    names = list(input_specs(raw))
    taken = {name for name in names if _SIGNATURE_NAME.fullmatch(name)}
    chosen: dict[str, str] = {}
    for name in names:
        if name in taken:
            chosen[name] = name
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        base = base if base[:1].isascii() and base[:1].isalpha() else f"input_{base}"
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(candidate)
        chosen[name] = candidate
    return chosen


def unused_inputs(
    raw: FeatureSpec | Mapping[str, FeatureSpec], steps: Sequence[Preprocessor]
) -> frozenset[str]:
    """The named raw inputs that the preprocessing's output does not depend on.

    E.g. the CSV columns ``process.concat_columns(columns=[...])`` leaves out: the model
    never sees them, so serving need not ask for them (see
    :attr:`~rxpipe.serving.bundle.TensorInfo.optional`). Found by tracing the steps'
    TensorFlow form and walking its graph back from the output; one unnamed array, or
    preprocessing whose output is not one tensor, counts every input as used.

    Example:
        >>> spec = FeatureSpec((), "float32")
        >>> unused_inputs({"a": spec, "b": spec}, [])
        frozenset()
    """
    import tensorflow as tf

    if isinstance(raw, FeatureSpec) or not steps:
        return frozenset()
    specs = input_specs(raw)
    names = signature_names(raw)
    placeholders: dict[str, Any] = {}

    def preprocess(features: Mapping[str, tf.Tensor]) -> Any:
        placeholders.update({name: features[served].op for name, served in names.items()})
        x: Any = {name: features[served] for name, served in names.items()}
        for step in steps:
            x = step.apply_tf(x)
        return x

    signature = {
        names[name]: tf.TensorSpec((None, *spec.shape), tf_dtype(spec.dtype), name=names[name])
        for name, spec in specs.items()
    }
    traced = tf.function(preprocess, autograph=False).get_concrete_function(signature)
    outputs = tf.nest.flatten(traced.structured_outputs)
    if len(outputs) != 1 or not isinstance(outputs[0], tf.Tensor):
        return frozenset()  # named outputs: the model takes each of them
    seen: set[Any] = set()
    pending = [outputs[0].op]
    while pending:
        op = pending.pop()
        if op in seen:
            continue
        seen.add(op)
        pending.extend(tensor.op for tensor in op.inputs)
        pending.extend(op.control_inputs)
    return frozenset(name for name, op in placeholders.items() if op not in seen)


def tf_dtype(dtype: str) -> tf.DType:
    """The TensorFlow dtype of a numpy dtype name; ``tf.string`` for text."""
    import tensorflow as tf

    return tf.string if dtype in _STRING_DTYPES else tf.as_dtype(dtype)


def is_image(raw: FeatureSpec | Mapping[str, FeatureSpec]) -> bool:
    """True for one numeric feature that holds pixels an encoded image can be mapped onto.

    That is a feature shaped (height, width, 1, 3 or 4 channels) whose values are known
    to be pixels: ``uint8`` (0–255), or any numeric dtype with a declared
    ``value_range`` (e.g. float images in [0, 1] from ``collect.numpy(value_range=[0,
    1])``, the digits' 0–16). A (height, width) feature counts only as ``uint8``: a
    float or integer matrix is as likely a time series or a table as a gray image.
    Without a value range a float feature's scale is unknown, and feeding it 0–255
    pixels would give wrong answers, so it gets no ``serving_images`` signature.

    Example:
        >>> is_image(FeatureSpec((28, 28), "uint8")), is_image(FeatureSpec((50, 6), "float32"))
        (True, False)
        >>> is_image(FeatureSpec((8, 8, 1), "float32")), is_image(
        ...     FeatureSpec((8, 8, 1), "float32", (0.0, 1.0))
        ... )
        (False, True)
    """
    if not isinstance(raw, FeatureSpec) or raw.dtype in _STRING_DTYPES or raw.dtype == "bool":
        return False
    pixels = raw.dtype == "uint8"
    if not pixels and raw.value_range is None:
        return False
    shape = raw.shape
    if len(shape) == 2:
        return pixels
    return len(shape) == 3 and shape[2] in (1, 3, 4)


def image_to_raw(image: tf.Tensor, spec: FeatureSpec) -> tf.Tensor:
    """Convert one decoded uint8 image (h, w, c) to a raw sample of ``spec``.

    ``c`` is the spec's channels (1 for a (height, width) spec). The image is resized
    (bilinear) to the spec's height and width unless it already has them, and its 0–255
    pixel values are mapped linearly onto the spec's value range (for the digits data
    set, 0–16; [0, 1] for float images declared so), or kept as they are for a
    ``uint8`` spec without one (:func:`is_image` admits no other). Integer specs are
    rounded.
    """
    import tensorflow as tf

    height, width = spec.shape[0], spec.shape[1]
    x = tf.cast(image, tf.float32)
    same_size = tf.logical_and(tf.shape(x)[0] == height, tf.shape(x)[1] == width)
    x = tf.cond(
        same_size,
        lambda: x,
        lambda: tf.image.resize(x, (height, width), method="bilinear", antialias=True),
    )
    x = tf.ensure_shape(x, (height, width, None))
    if spec.value_range is not None:
        low, high = spec.value_range
        x = x * ((high - low) / 255.0) + low
    if len(spec.shape) == 2:
        x = tf.squeeze(x, axis=-1)
    dtype = tf.as_dtype(spec.dtype)
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(x), dtype)
    return tf.cast(x, dtype)


def build_endpoints(
    model: keras.Model,
    raw: FeatureSpec | Mapping[str, FeatureSpec],
    steps: Sequence[Preprocessor],
    classify: bool,
    logits: bool = False,
    binary: bool = False,
) -> dict[str, tuple[Callable[..., dict[str, tf.Tensor]], list[Any]]]:
    """The endpoints to export, by name: ``(function, input_signature)``.

    Args:
        model: the trained Keras model (takes preprocessed features).
        raw: the spec of raw input.
        steps: the preprocessing to apply before the model, in order.
        classify: also answer ``class_ids`` (the arg-max of the scores).
        logits: the classifier outputs logits: its scores are their softmax.
        binary: the classifier has one output for two classes (see
            :func:`rxpipe.model.is_binary`): its scores are the two classes' probabilities.
    """
    import tensorflow as tf

    specs = input_specs(raw)
    names = signature_names(raw)

    def predict(features: Any) -> dict[str, tf.Tensor]:
        x = features
        if isinstance(x, Mapping):  # named by the signature: the steps know the raw names
            x = {name: x[served] for name, served in names.items()}
        for step in steps:
            x = step.apply_tf(x)
        scores = model(x, training=False)
        if scores.dtype in (tf.float16, tf.bfloat16):  # a mixed-precision model's output:
            scores = tf.cast(scores, tf.float32)  # clients get one dtype whatever training used
        if classify and binary:  # one output: the second class's probability (or logit)
            second = tf.sigmoid(scores) if logits else scores
            scores = tf.concat([1.0 - second, second], axis=-1)
        elif classify and logits:
            scores = tf.nn.softmax(scores, axis=-1)
        out = {"scores": scores}
        if classify:
            out["class_ids"] = tf.argmax(scores, axis=-1)
        return out

    signature: Any
    if isinstance(raw, FeatureSpec):
        signature = tf.TensorSpec((None, *raw.shape), tf_dtype(raw.dtype), name=SINGLE_INPUT)
    else:
        signature = {
            names[name]: tf.TensorSpec((None, *spec.shape), tf_dtype(spec.dtype), name=names[name])
            for name, spec in specs.items()
        }
    endpoints: dict[str, tuple[Callable[..., dict[str, tf.Tensor]], list[Any]]] = {
        DEFAULT_SIGNATURE: (predict, [signature])
    }
    if isinstance(raw, FeatureSpec) and is_image(raw):
        image_spec = raw
        channels = 1 if len(raw.shape) == 2 else raw.shape[2]
        opaque = tf.constant(255, tf.uint8)
        raw_tensor = tf.TensorSpec(raw.shape, tf.as_dtype(raw.dtype))

        def decode(data: tf.Tensor) -> tf.Tensor:
            image = decode_rgb_tf(data)  # as process.decode_image: the same pixels
            if channels == 1:  # as process.decode_image(channels=1) does it
                image = Grayscale().apply_tf(image[tf.newaxis])[0]
            elif channels == 4:  # RGBA: the decoders give RGB; the pixels are opaque
                alpha = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), opaque)
                image = tf.concat([image, alpha], -1)
            return image_to_raw(image, image_spec)

        def predict_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
            return predict(tf.map_fn(decode, images, fn_output_signature=raw_tensor))

        endpoints[IMAGE_SIGNATURE] = (
            predict_images,
            [tf.TensorSpec((None,), tf.string, name=IMAGE_INPUT)],
        )
    return endpoints
