"""VGG configurations A, D and E (Simonyan & Zisserman 2014, arXiv:1409.1556, Table 1) as
vgg_a, vgg_16 and vgg_19, with tf_slim's scopes, variable names and shapes: a tf_slim VGG
checkpoint restores into these nets unchanged, and their end points carry the same names.

One thing differs: how fc6-fc8 run.  tf_slim writes them as convolutions (fc6 a 7x7 VALID
convolution over pool5's 7x7 map, fc7 and fc8 1x1 ones).  On a CPU each training step then
reorders fc6's 103 M-weight kernel into oneDNN's blocked layout and back; on a 2-core AVX-512
host that was 0.85 s of a 16 s vgg_16 step at batch 32, and the three layers' kernels took
another 0.5 s for 1 % of the step's arithmetic.  Here, when the map reaching a layer has
exactly its kernel's size (224x224 input, the classification case), the layer is a matrix
product of the flattened map with the same kernel variable viewed as [kh*kw*in, out]: the
same sums in the same (h, w, c) order.  A larger input keeps the convolutions, so the nets
still run fully convolutionally.
"""
import tensorflow as tf
import tf_slim as slim

#: convolutions per block (64, 128, 256, 512, 512 channels) of each configuration
BLOCKS = {"vgg_a": (1, 1, 2, 2, 2), "vgg_16": (2, 2, 3, 3, 3), "vgg_19": (2, 2, 4, 4, 4)}
DEPTHS = (64, 128, 256, 512, 512)


@slim.add_arg_scope
def dense_conv(inputs, num_outputs, kernel_size, activation_fn=tf.nn.relu,
               weights_initializer=slim.xavier_initializer(), weights_regularizer=None,
               biases_initializer=tf.compat.v1.zeros_initializer(), outputs_collections=None,
               trainable=True, scope=None):
    """A VALID convolution whose kernel covers its whole input map, run as a matmul.

    Creates `weights` [kh, kw, in, out] and `biases` [out] under ``scope`` as slim.conv2d
    does (same defaults) and returns [N, 1, 1, out].  When the input map is not kernel-sized
    it is slim.conv2d with VALID padding."""
    kh, kw = kernel_size
    _, height, width, depth = inputs.shape.as_list()
    if (height, width) != (kh, kw):
        return slim.conv2d(inputs, num_outputs, [kh, kw], padding="VALID",
                           activation_fn=activation_fn,
                           weights_initializer=weights_initializer,
                           weights_regularizer=weights_regularizer,
                           biases_initializer=biases_initializer,
                           outputs_collections=outputs_collections, trainable=trainable,
                           scope=scope)
    with tf.compat.v1.variable_scope(scope, "Conv", [inputs]) as sc:
        weights = slim.model_variable(
            "weights", shape=[kh, kw, depth, num_outputs],
            initializer=weights_initializer,
            regularizer=weights_regularizer, trainable=trainable)
        flat = tf.reshape(inputs, [-1, kh * kw * depth])
        net = tf.linalg.matmul(flat, tf.reshape(weights, [kh * kw * depth, num_outputs]))
        if biases_initializer is not None:
            biases = slim.model_variable("biases", shape=[num_outputs],
                                         initializer=biases_initializer, trainable=trainable)
            net = tf.nn.bias_add(net, biases)
        if activation_fn is not None:
            net = activation_fn(net)
        net = tf.reshape(net, [-1, 1, 1, num_outputs])
        return slim.utils.collect_named_outputs(outputs_collections, sc.name, net)


def vgg_arg_scope(weight_decay=0.0005):
    """ReLU, L2 weight decay and zero biases on every layer; SAME padding on the 3x3 convs."""
    layers = [slim.conv2d, slim.fully_connected, dense_conv]
    with slim.arg_scope(layers, activation_fn=tf.nn.relu,
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        biases_initializer=tf.compat.v1.zeros_initializer()):
        with slim.arg_scope([slim.conv2d], padding="SAME") as sc:
            return sc


def _vgg(name, inputs, num_classes, is_training, dropout_keep_prob, spatial_squeeze, scope):
    with tf.compat.v1.variable_scope(scope, name, [inputs]) as sc:
        collection = sc.original_name_scope + "_end_points"
        with slim.arg_scope([slim.conv2d, dense_conv, slim.max_pool2d],
                            outputs_collections=collection):
            net = inputs
            for i, (count, depth) in enumerate(zip(BLOCKS[name], DEPTHS), start=1):
                net = slim.repeat(net, count, slim.conv2d, depth, [3, 3], scope=f"conv{i}")
                net = slim.max_pool2d(net, [2, 2], scope=f"pool{i}")
            net = dense_conv(net, 4096, [7, 7], scope="fc6")
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope="dropout6")
            net = dense_conv(net, 4096, [1, 1], scope="fc7")
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope="dropout7")
            net = dense_conv(net, num_classes, [1, 1], activation_fn=None, scope="fc8")
            end_points = slim.utils.convert_collection_to_dict(collection)
            if spatial_squeeze:
                net = tf.squeeze(net, [1, 2], name="fc8/squeezed")
                end_points[sc.name + "/fc8"] = net
            return net, end_points


def vgg_a(inputs, num_classes=1000, is_training=True, dropout_keep_prob=0.5,
          spatial_squeeze=True, scope="vgg_a"):
    return _vgg("vgg_a", inputs, num_classes, is_training, dropout_keep_prob, spatial_squeeze, scope)


def vgg_16(inputs, num_classes=1000, is_training=True, dropout_keep_prob=0.5,
           spatial_squeeze=True, scope="vgg_16"):
    return _vgg("vgg_16", inputs, num_classes, is_training, dropout_keep_prob, spatial_squeeze, scope)


def vgg_19(inputs, num_classes=1000, is_training=True, dropout_keep_prob=0.5,
           spatial_squeeze=True, scope="vgg_19"):
    return _vgg("vgg_19", inputs, num_classes, is_training, dropout_keep_prob, spatial_squeeze, scope)


for _fn in (vgg_a, vgg_16, vgg_19):
    _fn.default_image_size = 224
