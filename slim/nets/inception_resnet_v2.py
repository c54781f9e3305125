"""Inception-ResNet-v2 after Szegedy et al. 2016 (arXiv:1602.07261), Figs. 3,
16-18 with the stem and residual scaling (0.17 / 0.10 / 0.20) of the released
TF-slim checkpoints. Input 299x299. With 1001 classes and the auxiliary head:
~55.8M parameters.
"""
import tensorflow as tf
import tf_slim as slim

from slim.nets.common import aux_logits, inception_arg_scope, reduced_kernel_size

_VALID = dict(stride=2, padding="VALID")
_vs = tf.compat.v1.variable_scope


def _residual(net, mixed, scale, activation_fn):
    """Project the concatenated branches back to the trunk's depth and add."""
    up = slim.conv2d(mixed, net.get_shape()[3], [1, 1], normalizer_fn=None,
                     activation_fn=None, scope="Conv2d_1x1")
    net = net + scale * up
    return activation_fn(net) if activation_fn else net


def block35(net, scale=0.17, activation_fn=tf.nn.relu, scope=None):
    """Inception-ResNet-A (Fig. 16), 35x35 grid."""
    with _vs(scope, "Block35", [net]):
        with _vs("Branch_0"):
            b0 = slim.conv2d(net, 32, [1, 1], scope="Conv2d_1x1")
        with _vs("Branch_1"):
            b1 = slim.conv2d(net, 32, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 32, [3, 3], scope="Conv2d_0b_3x3")
        with _vs("Branch_2"):
            b2 = slim.conv2d(net, 32, [1, 1], scope="Conv2d_0a_1x1")
            b2 = slim.conv2d(b2, 48, [3, 3], scope="Conv2d_0b_3x3")
            b2 = slim.conv2d(b2, 64, [3, 3], scope="Conv2d_0c_3x3")
        return _residual(net, tf.concat([b0, b1, b2], 3), scale, activation_fn)


def block17(net, scale=0.10, activation_fn=tf.nn.relu, scope=None):
    """Inception-ResNet-B (Fig. 17), 17x17 grid."""
    with _vs(scope, "Block17", [net]):
        with _vs("Branch_0"):
            b0 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_1x1")
        with _vs("Branch_1"):
            b1 = slim.conv2d(net, 128, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 160, [1, 7], scope="Conv2d_0b_1x7")
            b1 = slim.conv2d(b1, 192, [7, 1], scope="Conv2d_0c_7x1")
        return _residual(net, tf.concat([b0, b1], 3), scale, activation_fn)


def block8(net, scale=0.20, activation_fn=tf.nn.relu, scope=None):
    """Inception-ResNet-C (Fig. 19), 8x8 grid."""
    with _vs(scope, "Block8", [net]):
        with _vs("Branch_0"):
            b0 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_1x1")
        with _vs("Branch_1"):
            b1 = slim.conv2d(net, 192, [1, 1], scope="Conv2d_0a_1x1")
            b1 = slim.conv2d(b1, 224, [1, 3], scope="Conv2d_0b_1x3")
            b1 = slim.conv2d(b1, 256, [3, 1], scope="Conv2d_0c_3x1")
        return _residual(net, tf.concat([b0, b1], 3), scale, activation_fn)


def inception_resnet_v2_base(inputs, scope="InceptionResnetV2"):
    end_points = {}
    with _vs(scope, "InceptionResnetV2", [inputs]):
        with slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d],
                            stride=1, padding="SAME"):
            net = slim.conv2d(inputs, 32, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
            net = slim.conv2d(net, 32, [3, 3], padding="VALID", scope="Conv2d_2a_3x3")
            net = slim.conv2d(net, 64, [3, 3], scope="Conv2d_2b_3x3")
            net = slim.max_pool2d(net, [3, 3], scope="MaxPool_3a_3x3", **_VALID)
            net = slim.conv2d(net, 80, [1, 1], padding="VALID", scope="Conv2d_3b_1x1")
            net = slim.conv2d(net, 192, [3, 3], padding="VALID", scope="Conv2d_4a_3x3")
            net = slim.max_pool2d(net, [3, 3], scope="MaxPool_5a_3x3", **_VALID)
            end_points["MaxPool_5a_3x3"] = net
            with _vs("Mixed_5b"):
                with _vs("Branch_0"):
                    b0 = slim.conv2d(net, 96, [1, 1], scope="Conv2d_1x1")
                with _vs("Branch_1"):
                    b1 = slim.conv2d(net, 48, [1, 1], scope="Conv2d_0a_1x1")
                    b1 = slim.conv2d(b1, 64, [5, 5], scope="Conv2d_0b_5x5")
                with _vs("Branch_2"):
                    b2 = slim.conv2d(net, 64, [1, 1], scope="Conv2d_0a_1x1")
                    b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0b_3x3")
                    b2 = slim.conv2d(b2, 96, [3, 3], scope="Conv2d_0c_3x3")
                with _vs("Branch_3"):
                    b3 = slim.avg_pool2d(net, [3, 3], scope="AvgPool_0a_3x3")
                    b3 = slim.conv2d(b3, 64, [1, 1], scope="Conv2d_0b_1x1")
                net = tf.concat([b0, b1, b2, b3], 3)
            end_points["Mixed_5b"] = net
            net = slim.repeat(net, 10, block35, scale=0.17)
            with _vs("Mixed_6a"):
                with _vs("Branch_0"):
                    b0 = slim.conv2d(net, 384, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with _vs("Branch_1"):
                    b1 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
                    b1 = slim.conv2d(b1, 256, [3, 3], scope="Conv2d_0b_3x3")
                    b1 = slim.conv2d(b1, 384, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with _vs("Branch_2"):
                    b2 = slim.max_pool2d(net, [3, 3], scope="MaxPool_1a_3x3", **_VALID)
                net = tf.concat([b0, b1, b2], 3)
            end_points["Mixed_6a"] = net
            net = slim.repeat(net, 20, block17, scale=0.10)
            end_points["PreAuxLogits"] = net
            with _vs("Mixed_7a"):
                with _vs("Branch_0"):
                    b0 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
                    b0 = slim.conv2d(b0, 384, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with _vs("Branch_1"):
                    b1 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
                    b1 = slim.conv2d(b1, 288, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with _vs("Branch_2"):
                    b2 = slim.conv2d(net, 256, [1, 1], scope="Conv2d_0a_1x1")
                    b2 = slim.conv2d(b2, 288, [3, 3], scope="Conv2d_0b_3x3")
                    b2 = slim.conv2d(b2, 320, [3, 3], scope="Conv2d_1a_3x3", **_VALID)
                with _vs("Branch_3"):
                    b3 = slim.max_pool2d(net, [3, 3], scope="MaxPool_1a_3x3", **_VALID)
                net = tf.concat([b0, b1, b2, b3], 3)
            end_points["Mixed_7a"] = net
            net = slim.repeat(net, 9, block8, scale=0.20)
            net = block8(net, scale=1.0, activation_fn=None)
            net = slim.conv2d(net, 1536, [1, 1], scope="Conv2d_7b_1x1")
            end_points["Conv2d_7b_1x1"] = net
    return net, end_points


def inception_resnet_v2(inputs, num_classes=1001, is_training=True,
                        dropout_keep_prob=0.8, reuse=None,
                        scope="InceptionResnetV2", create_aux_logits=True):
    """Inception-ResNet-v2 classifier; logits [N, num_classes]."""
    with _vs(scope, "InceptionResnetV2", [inputs], reuse=reuse) as sc:
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net, end_points = inception_resnet_v2_base(inputs, scope=sc)
            if create_aux_logits and num_classes:
                with slim.arg_scope([slim.conv2d, slim.avg_pool2d], stride=1,
                                    padding="SAME"):
                    end_points["AuxLogits"] = aux_logits(
                        end_points["PreAuxLogits"], num_classes)
            with _vs("Logits"):
                net = slim.avg_pool2d(net, reduced_kernel_size(net, [8, 8]),
                                      padding="VALID", scope="AvgPool_1a_8x8")
                net = slim.flatten(net)
                net = slim.dropout(net, dropout_keep_prob, scope="Dropout")
                end_points["PreLogitsFlatten"] = net
                logits = slim.fully_connected(net, num_classes, activation_fn=None,
                                              scope="Logits")
                end_points["Logits"] = logits
                end_points["Predictions"] = tf.nn.softmax(logits, name="Predictions")
    return logits, end_points


inception_resnet_v2.default_image_size = 299


def inception_resnet_v2_arg_scope(weight_decay=0.00004, batch_norm_decay=0.9997,
                                  batch_norm_epsilon=0.001):
    return inception_arg_scope(weight_decay, batch_norm_decay, batch_norm_epsilon)
