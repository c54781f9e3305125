"""Helpers shared by the nets written here (not provided by tf_slim.nets)."""
import tensorflow as tf
import tf_slim as slim


def inception_arg_scope(weight_decay=0.00004, batch_norm_decay=0.9997,
                        batch_norm_epsilon=0.001, batch_norm_scale=False,
                        activation_fn=tf.nn.relu):
    """conv2d + batch norm + relu, L2 on weights: the Inception family's scope."""
    batch_norm_params = {
        "decay": batch_norm_decay,
        "epsilon": batch_norm_epsilon,
        "scale": batch_norm_scale,
        "updates_collections": tf.compat.v1.GraphKeys.UPDATE_OPS,
        "fused": None,
    }
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_regularizer=slim.l2_regularizer(weight_decay)):
        with slim.arg_scope([slim.conv2d],
                            weights_initializer=slim.variance_scaling_initializer(),
                            activation_fn=activation_fn,
                            normalizer_fn=slim.batch_norm,
                            normalizer_params=batch_norm_params) as sc:
            return sc


def reduced_kernel_size(inputs, kernel_size):
    """Shrink a pooling kernel to the feature map so small inputs still work."""
    shape = inputs.get_shape().as_list()
    if shape[1] is None or shape[2] is None:
        return list(kernel_size)
    return [min(shape[1], kernel_size[0]), min(shape[2], kernel_size[1])]


def aux_logits(net, num_classes, scope="AuxLogits"):
    """Auxiliary classifier head used by Inception v4 / Inception-ResNet v2."""
    with tf.compat.v1.variable_scope(scope):
        aux = slim.avg_pool2d(net, [5, 5], stride=3, padding="VALID",
                              scope="AvgPool_1a_5x5")
        aux = slim.conv2d(aux, 128, [1, 1], scope="Conv2d_1b_1x1")
        aux = slim.conv2d(aux, 768, aux.get_shape()[1:3], padding="VALID",
                          scope="Conv2d_2a")
        aux = slim.flatten(aux)
        return slim.fully_connected(aux, num_classes, activation_fn=None,
                                    scope="Aux_logits")
