"""Inception-v4 after Szegedy et al. 2016, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning" (arXiv:1602.07261), Figs. 3-9.

Input 299x299. With 1001 classes and the auxiliary head: ~42.7M parameters.
"""
import tensorflow as tf
import tf_slim as slim

from slim.nets.common import aux_logits, inception_arg_scope, reduced_kernel_size

_VALID = dict(stride=2, padding="VALID")


def _concat(*branches):
    return tf.concat(axis=3, values=list(branches))


def _block_a(net, scope):
    """Inception-A (Fig. 4): 35x35x384 -> 35x35x384."""
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 96, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 64, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 96, [3, 3], scope="Conv2d_0b_3x3")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 64, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0c_3x3")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(net, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 96, [1, 1], scope="Conv2d_0b_1x1")
        return _concat(b0, b1, b2, b3)


def _reduction_a(net, scope):
    """Reduction-A (Fig. 7, k=192 l=224 m=256 n=384): 35 -> 17."""
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 384, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [3, 3], scope="Conv2d_0b_3x3")
            b1 = slim.conv2d(b1, 256, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.max_pool2d(net, [3, 3], scope="MaxPool_1a_3x3", **_VALID)
        return _concat(b0, b1, b2)


def _block_b(net, scope):
    """Inception-B (Fig. 5): 17x17x1024 -> 17x17x1024."""
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 384, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 256, [7, 1], scope="Conv2d_0c_7x1")
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 192, [7, 1], scope="Conv2d_0b_7x1")
            b2 = slim.conv2d(b2, 224, [1, 7], scope="Conv2d_0c_1x7")
            b2 = slim.conv2d(b2, 224, [7, 1], scope="Conv2d_0d_7x1")
            b2 = slim.conv2d(b2, 256, [1, 7], scope="Conv2d_0e_1x7")
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(net, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 128, [1, 1], scope="Conv2d_0b_1x1")
        return _concat(b0, b1, b2, b3)


def _reduction_b(net, scope):
    """Reduction-B (Fig. 8): 17 -> 8."""
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_0a_1x1")
            b0 = slim.conv2d(b0, 192, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 256, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 320, [7, 1], scope="Conv2d_0c_7x1")
            b1 = slim.conv2d(b1, 320, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.max_pool2d(net, [3, 3], scope="MaxPool_1a_3x3", **_VALID)
        return _concat(b0, b1, b2)


def _block_c(net, scope):
    """Inception-C (Fig. 6): 8x8x1536 -> 8x8x1536."""
    with tf.compat.v1.variable_scope(scope):
        with tf.compat.v1.variable_scope("Branch_0"):
            b0 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
        with tf.compat.v1.variable_scope("Branch_1"):
            b1 = slim.conv2d(net, 384, [1, 1], scope="Conv2d_0a_1x1")
            b1 = _concat(slim.conv2d(b1, 256, [1, 3], scope="Conv2d_0b_1x3"),
                         slim.conv2d(b1, 256, [3, 1], scope="Conv2d_0c_3x1"))
        with tf.compat.v1.variable_scope("Branch_2"):
            b2 = slim.conv2d(net, 384, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 448, [3, 1], scope="Conv2d_0b_3x1")
            b2 = slim.conv2d(b2, 512, [1, 3], scope="Conv2d_0c_1x3")
            b2 = _concat(slim.conv2d(b2, 256, [1, 3], scope="Conv2d_0d_1x3"),
                         slim.conv2d(b2, 256, [3, 1], scope="Conv2d_0e_3x1"))
        with tf.compat.v1.variable_scope("Branch_3"):
            b3 = slim.avg_pool2d(net, [3, 3], scope="AvgPool_0a_3x3")
            b3 = slim.conv2d(b3, 256, [1, 1], scope="Conv2d_0b_1x1")
        return _concat(b0, b1, b2, b3)


def inception_v4_base(inputs, scope="InceptionV4"):
    """Stem (Fig. 3) and the 4xA, RA, 7xB, RB, 3xC stack; returns (net, end_points)."""
    end_points = {}
    with tf.compat.v1.variable_scope(scope, "InceptionV4", [inputs]):
        with slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d],
                            stride=1, padding="SAME"):
            net = slim.conv2d(inputs, 32, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
            net = slim.conv2d(net, 32, [3, 3], padding="VALID", scope="Conv2d_2a_3x3")
            net = slim.conv2d(net, 64, [3, 3], scope="Conv2d_2b_3x3")
            end_points["Conv2d_2b_3x3"] = net
            with tf.compat.v1.variable_scope("Mixed_3a"):
                with tf.compat.v1.variable_scope("Branch_0"):
                    b0 = slim.max_pool2d(net, [3, 3], scope="MaxPool_0a_3x3", **_VALID)
                with tf.compat.v1.variable_scope("Branch_1"):
                    b1 = slim.conv2d(net, 96, [3, 3], scope="Conv2d_0a_3x3", **_VALID)
                net = _concat(b0, b1)
            with tf.compat.v1.variable_scope("Mixed_4a"):
                with tf.compat.v1.variable_scope("Branch_0"):
                    b0 = slim.conv2d(net, 64, [1, 1], scope="Conv2d_0a_1x1")
                    b0 = slim.conv2d(b0, 96, [3, 3], padding="VALID", scope="Conv2d_1a_3x3")
                with tf.compat.v1.variable_scope("Branch_1"):
                    b1 = slim.conv2d(net, 64, [1, 1], scope="Conv2d_0a_1x1")
                    b1 = slim.conv2d(b1, 64, [1, 7], scope="Conv2d_0b_1x7")
                    b1 = slim.conv2d(b1, 64, [7, 1], scope="Conv2d_0c_7x1")
                    b1 = slim.conv2d(b1, 96, [3, 3], padding="VALID", scope="Conv2d_1a_3x3")
                net = _concat(b0, b1)
            with tf.compat.v1.variable_scope("Mixed_5a"):
                with tf.compat.v1.variable_scope("Branch_0"):
                    b0 = slim.conv2d(net, 192, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with tf.compat.v1.variable_scope("Branch_1"):
                    b1 = slim.max_pool2d(net, [3, 3], scope="MaxPool_1a_3x3", **_VALID)
                net = _concat(b0, b1)
            end_points["Mixed_5a"] = net
            for letter in "bcde":
                net = end_points["Mixed_5" + letter] = _block_a(net, "Mixed_5" + letter)
            net = end_points["Mixed_6a"] = _reduction_a(net, "Mixed_6a")
            for letter in "bcdefgh":
                net = end_points["Mixed_6" + letter] = _block_b(net, "Mixed_6" + letter)
            net = end_points["Mixed_7a"] = _reduction_b(net, "Mixed_7a")
            for letter in "bcd":
                net = end_points["Mixed_7" + letter] = _block_c(net, "Mixed_7" + letter)
    return net, end_points


def inception_v4(inputs, num_classes=1001, is_training=True, dropout_keep_prob=0.8,
                 reuse=None, scope="InceptionV4", create_aux_logits=True):
    """Inception-v4 classifier; logits [N, num_classes]."""
    with tf.compat.v1.variable_scope(scope, "InceptionV4", [inputs], reuse=reuse) as sc:
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net, end_points = inception_v4_base(inputs, scope=sc)
            with slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d],
                                stride=1, padding="SAME"):
                if create_aux_logits and num_classes:
                    end_points["AuxLogits"] = aux_logits(
                        end_points["Mixed_6h"], num_classes)
                with tf.compat.v1.variable_scope("Logits"):
                    net = slim.avg_pool2d(net, reduced_kernel_size(net, [8, 8]),
                                          padding="VALID", scope="AvgPool_1a")
                    net = slim.flatten(slim.dropout(net, dropout_keep_prob,
                                                    scope="Dropout_1b"))
                    end_points["PreLogitsFlatten"] = net
                    logits = slim.fully_connected(net, num_classes, activation_fn=None,
                                                  scope="Logits")
                    end_points["Logits"] = logits
                    end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points


inception_v4.default_image_size = 299
inception_v4_arg_scope = inception_arg_scope
