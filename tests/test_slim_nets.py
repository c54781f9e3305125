"""Nets factory and the tf-slim compatibility shim on TF 2.21."""
import numpy as np
import pytest

from slim import nets
from zoobuild.errors import UserError

TF_SLIM_NETS = ["alexnet_v2", "inception_v1", "inception_v2", "inception_v3", "overfeat",
                "vgg_a", "vgg_16", "vgg_19"] + [
    f"resnet_{v}_{d}" for v in ("v1", "v2") for d in (50, 101, 152, 200)]
OWN_NETS = ["inception_v4", "inception_resnet_v2", "mobilenet_v1"]


def _build(name, num_classes, size=None, is_training=False, batch=None):
    import tensorflow as tf

    fn = nets.get_network_fn(name, num_classes, is_training=is_training)
    size = size or fn.default_image_size
    images = tf.compat.v1.placeholder(tf.float32, [batch, size, size, 3], name="images")
    logits, end_points = fn(images)
    return images, logits, end_points


def test_registry_has_every_tf_slim_net_and_ours():
    assert set(TF_SLIM_NETS + OWN_NETS) <= set(nets.MODEL_NAMES)


@pytest.mark.parametrize("name,size", [("vgg_16", 224), ("vgg_a", 224), ("alexnet_v2", 224),
                                       ("inception_v1", 224), ("inception_v3", 299),
                                       ("inception_v4", 299), ("inception_resnet_v2", 299),
                                       ("resnet_v1_50", 224), ("resnet_v2_152", 224),
                                       ("overfeat", 231), ("mobilenet_v1", 224)])
def test_default_image_sizes(name, size):
    assert nets.default_image_size(name) == size


def test_unknown_model_is_one_line_listing_names():
    with pytest.raises(UserError) as err:
        nets.get_network_fn("vgg_17", 10)
    msg = str(err.value)
    assert "\n" not in msg and "vgg_17" in msg
    assert all(name in msg for name in ("vgg_16", "resnet_v1_50", "inception_v4"))


@pytest.mark.slow
def test_every_net_builds_with_logits_n_by_classes():
    """Graph construction only: every net gives [N, classes] logits at its default size
    (resnet's [N,1,1,C] is squeezed; batch-norm nets need the compat shim)."""
    import tensorflow as tf

    import importlib

    for name in nets.MODEL_NAMES:
        if name in OWN_NETS:
            continue  # built at full size with 1001 classes by the parameter-count test
        if name.startswith("resnet_") and name.endswith(("_152", "_200")):
            # the 50 and 101 of each version build through the same table row and tf_slim code;
            # the deep ones (46 s of graph construction) need only resolve to their own function
            spec = nets.spec(name)
            assert getattr(importlib.import_module(spec.module), spec.fn).__name__ == name
            continue
        with tf.Graph().as_default():
            _, logits, _ = _build(name, 7)
            assert logits.shape.as_list() == [None, 7], name


@pytest.mark.parametrize("name", ["resnet_v1_50", "inception_v3", "mobilenet_v1_025"])
def test_batch_norm_nets_run_forward_and_train_step(name):
    """slim.batch_norm needs the tf_keras legacy-layer alias: build, update BN stats, run."""
    import tensorflow as tf

    with tf.Graph().as_default():
        images, logits, _ = _build(name, 5, size={"resnet_v1_50": 64, "inception_v3": 160}.get(name, 96),
                                   is_training=True)
        updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        assert updates, "batch norm registered no moving-average updates"
        moving = [v for v in tf.compat.v1.global_variables() if "moving_mean" in v.name]
        assert moving
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            before = sess.run(moving[0])
            size = images.shape.as_list()[1]
            x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
            out, _ = sess.run([logits, updates], {images: x})
            after = sess.run(moving[0])
    assert out.shape == (2, 5) and np.isfinite(out).all()
    assert not np.allclose(before, after)


def test_tfexample_decoder_patch():
    """tf_slim's TFExampleDecoder calls control_flow_ops.case; the shim restores it."""
    import slim.compat  # noqa: F401
    import tensorflow as tf
    import tf_slim

    ex = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[tf.io.encode_jpeg(np.zeros((4, 4, 3), np.uint8)).numpy()])),
        "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))}))
    keys_to_features = {
        "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
        "image/format": tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    handlers = {"image": tf_slim.tfexample_decoder.Image(),
                "label": tf_slim.tfexample_decoder.Tensor("image/class/label")}
    decoder = tf_slim.tfexample_decoder.TFExampleDecoder(keys_to_features, handlers)
    with tf.Graph().as_default():
        image, label = decoder.decode(tf.constant(ex.SerializeToString()), ["image", "label"])
        with tf.compat.v1.Session() as sess:
            img, lab = sess.run([image, label])
    assert img.shape == (4, 4, 3) and lab == 3


# Published sizes, 1001 classes, without the auxiliary training head:
# Inception-v4 42.7M and Inception-ResNet-v2 55.8M (Szegedy et al. 2016, as released
# with TF-slim / Keras Applications), MobileNet-v1 1.0-224 4.2M (Howard et al. 2017, Table 8).
PAPER_PARAMS = {"inception_v4": 42.7e6, "inception_resnet_v2": 55.8e6, "mobilenet_v1": 4.2e6}


@pytest.mark.slow
@pytest.mark.parametrize("name", OWN_NETS)
def test_parameter_counts_match_the_papers(name):
    import tensorflow as tf

    with tf.Graph().as_default():
        _, logits, _ = _build(name, 1001, is_training=True)
        assert logits.shape.as_list() == [None, 1001]
        params = [v for v in tf.compat.v1.trainable_variables() if "AuxLogits" not in v.name]
        count = sum(int(np.prod(v.shape.as_list())) for v in params)
    assert abs(count - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01, count


def test_own_nets_work_at_small_inputs():
    """The pooling kernels shrink for small inputs, as in research/slim."""
    import tensorflow as tf

    with tf.Graph().as_default():
        _, logits, _ = _build("mobilenet_v1_050", 3, size=64)
        assert logits.shape.as_list() == [None, 3]


def _vgg_graph(module, name, size, squeeze=True):
    """(graph, input, logits, end points, {variable: shape}, regularization-loss count)."""
    import tensorflow as tf
    import tf_slim

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, 3])
        with tf_slim.arg_scope(module.vgg_arg_scope(0.0005)):
            logits, ends = getattr(module, name)(x, num_classes=1001, is_training=False,
                                                 spatial_squeeze=squeeze)
        shapes = {v.op.name: v.shape.as_list() for v in v1.global_variables()}
        regs = len(v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES))
    return graph, x, logits, ends, shapes, regs


@pytest.mark.parametrize("name", ["vgg_a", "vgg_16", "vgg_19"])
def test_vgg_has_tf_slim_variables_and_end_points(name):
    """Our VGG (fc6-fc8 as matmuls) keeps tf_slim's checkpoint layout and end point names."""
    import slim.compat  # noqa: F401
    import tf_slim.nets.vgg as theirs

    import slim.nets.vgg as ours

    _, _, _, ends_t, shapes_t, regs_t = _vgg_graph(theirs, name, 224)
    graph, _, _, ends_o, shapes_o, regs_o = _vgg_graph(ours, name, 224)
    assert shapes_o == shapes_t and sorted(ends_o) == sorted(ends_t) and regs_o == regs_t
    kinds = [op.type for op in graph.get_operations()]
    assert kinds.count("MatMul") == 3   # fc6, fc7, fc8


@pytest.mark.slow
@pytest.mark.parametrize("size,squeeze", [(224, True), (256, False)])
def test_vgg_logits_equal_tf_slim_with_the_same_weights(size, squeeze):
    """Same weights, same inputs: the matmul fc layers (224) and the fully convolutional
    fallback (256: pool5 is 8x8, fc6 stays a 7x7 VALID conv) give tf_slim's logits."""
    import slim.compat  # noqa: F401
    import tensorflow as tf
    import tf_slim.nets.vgg as theirs

    import slim.nets.vgg as ours

    v1 = tf.compat.v1
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    graph_t, in_t, logits_t, *_ = _vgg_graph(theirs, "vgg_16", size, squeeze)
    with graph_t.as_default(), v1.Session(graph=graph_t) as sess:
        sess.run(v1.global_variables_initializer())
        weights = {v.op.name: sess.run(v) for v in v1.global_variables()}
        want = sess.run(logits_t, {in_t: x})
    graph_o, in_o, logits_o, *_ = _vgg_graph(ours, "vgg_16", size, squeeze)
    with graph_o.as_default(), v1.Session(graph=graph_o) as sess:
        for v in v1.global_variables():
            v.load(weights[v.op.name], sess)
        got = sess.run(logits_o, {in_o: x})
    assert got.shape == want.shape == ((2, 1001) if squeeze else (2, 2, 2, 1001))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
