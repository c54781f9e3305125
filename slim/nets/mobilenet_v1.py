"""MobileNet v1 after Howard et al. 2017, "MobileNets: Efficient Convolutional
Neural Networks for Mobile Vision Applications" (arXiv:1704.04861), Table 1.

A 3x3 full conv followed by 13 depthwise-separable blocks (3x3 depthwise +
1x1 pointwise, each with batch norm and ReLU6). Width multiplier alpha scales
every depth. 1.0-224 with 1001 classes: ~4.2M parameters.
"""
import functools

import tensorflow as tf
import tf_slim as slim

from slim.nets.common import reduced_kernel_size

# (kind, stride, depth) from Table 1.
CONV_DEFS = [("conv", 2, 32)] + [
    ("sep", s, d) for s, d in [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256),
                               (2, 512), (1, 512), (1, 512), (1, 512), (1, 512),
                               (1, 512), (2, 1024), (1, 1024)]]


def mobilenet_v1_base(inputs, depth_multiplier=1.0, min_depth=8, scope=None):
    end_points = {}
    depth = lambda d: max(int(d * depth_multiplier), min_depth)  # noqa: E731
    with tf.compat.v1.variable_scope(scope, "MobilenetV1", [inputs]):
        with slim.arg_scope([slim.conv2d, slim.separable_conv2d], padding="SAME"):
            net = inputs
            for i, (kind, stride, d) in enumerate(CONV_DEFS):
                if kind == "conv":
                    name = f"Conv2d_{i}"
                    net = slim.conv2d(net, depth(d), [3, 3], stride=stride, scope=name)
                else:
                    name = f"Conv2d_{i}_depthwise"
                    net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1,
                                                stride=stride, scope=name)
                    end_points[name] = net
                    name = f"Conv2d_{i}_pointwise"
                    net = slim.conv2d(net, depth(d), [1, 1], stride=1, scope=name)
                end_points[name] = net
    return net, end_points


def mobilenet_v1(inputs, num_classes=1001, is_training=True, dropout_keep_prob=0.999,
                 depth_multiplier=1.0, min_depth=8, reuse=None, scope="MobilenetV1"):
    """MobileNet v1 classifier; logits [N, num_classes]."""
    with tf.compat.v1.variable_scope(scope, "MobilenetV1", [inputs], reuse=reuse) as sc:
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net, end_points = mobilenet_v1_base(inputs, depth_multiplier, min_depth,
                                                scope=sc)
            with tf.compat.v1.variable_scope("Logits"):
                net = slim.avg_pool2d(net, reduced_kernel_size(net, [7, 7]),
                                      padding="VALID", scope="AvgPool_1a")
                net = slim.dropout(net, keep_prob=dropout_keep_prob, scope="Dropout_1b")
                logits = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                                     normalizer_fn=None, scope="Conv2d_1c_1x1")
                logits = tf.squeeze(logits, [1, 2], name="SpatialSqueeze")
            end_points["Logits"] = logits
            end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points


mobilenet_v1.default_image_size = 224


def _with_multiplier(multiplier):
    fn = functools.partial(mobilenet_v1, depth_multiplier=multiplier)
    functools.update_wrapper(fn, mobilenet_v1)
    fn.default_image_size = 224
    return fn


mobilenet_v1_075 = _with_multiplier(0.75)
mobilenet_v1_050 = _with_multiplier(0.50)
mobilenet_v1_025 = _with_multiplier(0.25)


def mobilenet_v1_arg_scope(is_training=True, weight_decay=0.00004, stddev=0.09,
                           regularize_depthwise=False, batch_norm_decay=0.9997,
                           batch_norm_epsilon=0.001):
    batch_norm_params = {"center": True, "scale": True, "decay": batch_norm_decay,
                         "epsilon": batch_norm_epsilon}
    if is_training is not None:
        batch_norm_params["is_training"] = is_training
    regularizer = slim.l2_regularizer(weight_decay)
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf.compat.v1.truncated_normal_initializer(
                            stddev=stddev),
                        activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm):
        with slim.arg_scope([slim.batch_norm], **batch_norm_params):
            with slim.arg_scope([slim.conv2d], weights_regularizer=regularizer):
                with slim.arg_scope([slim.separable_conv2d],
                                    weights_regularizer=regularizer
                                    if regularize_depthwise else None) as sc:
                    return sc
