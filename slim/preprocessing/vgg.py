"""VGG-style preprocessing (Simonyan & Zisserman 2014), as research/slim does it.

train: aspect-preserving resize so the smaller side is random in
[resize_side_min, resize_side_max], random crop, random horizontal flip,
per-channel mean subtraction. eval: resize smaller side to resize_side_min,
central crop, mean subtraction. Output float32 [H, W, 3].
"""
import tensorflow as tf

_MEANS = (123.68, 116.78, 103.94)
RESIZE_SIDE_MIN = 256
RESIZE_SIDE_MAX = 512


def _smallest_side_resize(image, smallest_side):
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    smallest_side = tf.cast(smallest_side, tf.float32)
    scale = smallest_side / tf.minimum(height, width)
    new_h = tf.cast(tf.math.round(height * scale), tf.int32)
    new_w = tf.cast(tf.math.round(width * scale), tf.int32)
    return tf.image.resize(image, [new_h, new_w], method="bilinear")


def _mean_subtract(image):
    return image - tf.constant(_MEANS, dtype=tf.float32)


def preprocess_image(image, output_height, output_width, is_training=False,
                     resize_side_min=RESIZE_SIDE_MIN, resize_side_max=RESIZE_SIDE_MAX):
    image = tf.cast(image, tf.float32)
    if is_training:
        side = tf.random.uniform([], resize_side_min, resize_side_max + 1, dtype=tf.int32)
        side = tf.maximum(side, tf.maximum(output_height, output_width))
        image = _smallest_side_resize(image, side)
        image = tf.image.random_crop(image, [output_height, output_width, 3])
        image = tf.image.random_flip_left_right(image)
    else:
        image = _smallest_side_resize(
            image, max(resize_side_min, output_height, output_width))
        image = tf.image.resize_with_crop_or_pad(image, output_height, output_width)
    image.set_shape([output_height, output_width, 3])
    return _mean_subtract(image)
