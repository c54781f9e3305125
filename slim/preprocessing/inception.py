"""Inception-style preprocessing (Szegedy et al.), as research/slim does it.

train: random distorted crop covering 5-100% of the image with aspect ratio
in [3/4, 4/3], resize, random flip, colour distortion (fast mode), scaled to
[-1, 1]. eval: central crop of 87.5%, resize, scaled to [-1, 1].
"""
import tensorflow as tf


def _distort_color(image, ordering):
    # Two orderings, chosen at random per image, as slim's fast mode.
    if ordering == 0:
        image = tf.image.random_brightness(image, max_delta=32. / 255.)
        image = tf.image.random_saturation(image, lower=0.5, upper=1.5)
    else:
        image = tf.image.random_saturation(image, lower=0.5, upper=1.5)
        image = tf.image.random_brightness(image, max_delta=32. / 255.)
    return tf.clip_by_value(image, 0.0, 1.0)


def preprocess_for_train(image, height, width, bbox=None):
    image = tf.image.convert_image_dtype(image, tf.float32)
    if bbox is None:
        bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=bbox, min_object_covered=0.1,
        aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0),
        max_attempts=100, use_image_if_no_bounding_boxes=True,
        # an op seed is required under op determinism (the op ignores the graph seed
        # without one); combined with the graph seed, so runs still differ by seed
        seed=1)
    image = tf.slice(image, begin, size)
    image = tf.image.resize(image, [height, width], method="bilinear")
    image = tf.image.random_flip_left_right(image)
    ordering = tf.random.uniform([], 0, 2, dtype=tf.int32)
    image = tf.cond(tf.equal(ordering, 0), lambda: _distort_color(image, 0),
                    lambda: _distort_color(image, 1))
    return (image - 0.5) * 2.0


def preprocess_for_eval(image, height, width, central_fraction=0.875):
    image = tf.image.convert_image_dtype(image, tf.float32)
    if central_fraction:
        image = tf.image.central_crop(image, central_fraction=central_fraction)
    image = tf.image.resize(image, [height, width], method="bilinear")
    return (image - 0.5) * 2.0


def preprocess_image(image, output_height, output_width, is_training=False):
    if is_training:
        image = preprocess_for_train(image, output_height, output_width)
    else:
        image = preprocess_for_eval(image, output_height, output_width)
    image.set_shape([output_height, output_width, 3])
    return image
