"""Optimizers, learning-rate schedules, preprocessing and the option table."""
import numpy as np
import pytest

from slim import options
from zoobuild.errors import UserError


def _cfg(**kw):
    return {**options.defaults(), **kw}


SLIM_FLAGS = ["batch_size", "weight_decay", "optimizer", "adadelta_rho",
              "adagrad_initial_accumulator_value", "adam_beta1", "adam_beta2", "opt_epsilon",
              "ftrl_learning_rate_power", "ftrl_initial_accumulator_value", "ftrl_l1", "ftrl_l2",
              "momentum", "rmsprop_momentum", "rmsprop_decay", "learning_rate_decay_type",
              "learning_rate", "end_learning_rate", "label_smoothing",
              "learning_rate_decay_factor", "num_epochs_per_decay", "sync_replicas",
              "replicas_to_aggregate", "moving_average_decay", "labels_offset",
              "train_image_size", "checkpoint_path", "checkpoint_exclude_scopes",
              "trainable_scopes", "ignore_missing_vars", "log_every_n_steps",
              "save_summaries_secs", "save_interval_secs", "use_grayscale",
              "dataset_split_name", "preprocessing", "steps"]


def test_every_train_image_classifier_option_is_declared_with_slims_default():
    d = options.defaults()
    assert set(SLIM_FLAGS) <= set(d)
    assert (d["optimizer"], d["learning_rate"], d["learning_rate_decay_type"]) == \
        ("rmsprop", 0.01, "exponential")
    assert (d["opt_epsilon"], d["rmsprop_decay"], d["num_epochs_per_decay"]) == (1.0, 0.9, 2.0)
    assert (d["weight_decay"], d["learning_rate_decay_factor"], d["end_learning_rate"]) == \
        (0.00004, 0.94, 0.0001)


def test_doit_vars_are_declared_for_every_option():
    from tasks import params
    import tasks.train  # noqa: F401  (declares the vars)

    reg = params.registry()
    for name, typ, default, _, _ in options.TRAIN_OPTIONS + options.EVAL_OPTIONS:
        owned = [v for v in reg.get(name, []) if v.owner == "tasks.train"]
        assert owned and owned[0].type is typ and owned[0].default == default, name
    assert [v.owner for v in reg["model"]] == ["tasks.common"]   # declared once, shared


@pytest.mark.parametrize("name", ["adadelta", "adagrad", "adam", "ftrl", "momentum",
                                  "rmsprop", "sgd"])
def test_each_optimizer_minimises_a_quadratic(name):
    import tensorflow as tf
    from slim import optimizers

    lr = {"adadelta": 1.0, "adagrad": 0.5, "ftrl": 0.5}.get(name, 0.1)
    with tf.Graph().as_default():
        x = tf.compat.v1.get_variable("x", initializer=tf.constant([3.0, -2.0]))
        loss = tf.reduce_sum(tf.square(x))
        opt = optimizers.configure_optimizer(_cfg(optimizer=name, opt_epsilon=1e-3), lr)
        step = opt.minimize(loss)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            first = sess.run(loss)
            for _ in range(30):
                sess.run(step)
            assert sess.run(loss) < first * 0.9


def test_unknown_optimizer_is_refused():
    from slim import optimizers

    with pytest.raises(UserError, match="optimizer.*adam"):
        optimizers.configure_optimizer(_cfg(optimizer="lion"), 0.1)


def _lr_values(cfg, steps, num_samples=100):
    import tensorflow as tf
    from slim import optimizers

    with tf.Graph().as_default():
        gs = tf.compat.v1.placeholder(tf.int64, [])
        lr = optimizers.configure_learning_rate(cfg, num_samples, gs)
        with tf.compat.v1.Session() as sess:
            return [float(sess.run(lr, {gs: s})) for s in steps]


def test_learning_rate_schedules():
    # 100 samples / batch 10 = 10 steps per epoch; decay every 2 epochs = 20 steps.
    base = dict(batch_size=10, learning_rate=0.1, num_epochs_per_decay=2.0)
    fixed = _lr_values(_cfg(learning_rate_decay_type="fixed", **base), [0, 50, 500])
    assert fixed == pytest.approx([0.1] * 3)
    exp = _lr_values(_cfg(learning_rate_decay_type="exponential", **base), [0, 19, 20, 45])
    assert exp == pytest.approx([0.1, 0.1, 0.094, 0.1 * 0.94 ** 2], rel=1e-5)
    poly = _lr_values(_cfg(learning_rate_decay_type="polynomial", end_learning_rate=0.001,
                           **base), [0, 10, 20, 100])
    assert poly == pytest.approx([0.1, 0.0505, 0.001, 0.001], rel=1e-4)
    warm = _lr_values(_cfg(learning_rate_decay_type="fixed", warmup_epochs=1.0, **base),
                      [0, 4, 9, 30])
    assert warm == pytest.approx([0.01, 0.05, 0.1, 0.1], rel=1e-5)


@pytest.mark.parametrize("style,lo,hi", [("vgg", -130.0, 155.0), ("inception", -1.0, 1.0)])
def test_preprocessing_shapes_ranges_and_train_eval_variants(style, lo, hi):
    import tensorflow as tf
    from slim import preprocessing

    rng = np.random.default_rng(0)
    img = tf.constant(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    outs = {}
    for training in (True, False):
        fn = preprocessing.get_preprocessing(style, is_training=training)
        outs[training] = [fn(img, 64, 64).numpy() for _ in range(2)]
    for arrs in outs.values():
        for a in arrs:
            assert a.shape == (64, 64, 3) and a.dtype == np.float32
            assert lo - 1e-3 <= a.min() and a.max() <= hi + 1e-3
    assert np.array_equal(outs[False][0], outs[False][1])       # eval is deterministic
    assert not np.array_equal(outs[True][0], outs[True][1])     # train is augmented


def test_preprocessing_chosen_per_net_and_overridable():
    from slim import preprocessing

    assert preprocessing.for_model("vgg_16") == "vgg"
    assert preprocessing.for_model("resnet_v1_50") == "vgg"
    assert preprocessing.for_model("inception_v3") == "inception"
    assert preprocessing.for_model("mobilenet_v1") == "inception"
    assert preprocessing.for_model("vgg_16", "inception") == "inception"
    with pytest.raises(UserError, match="preprocessing.*inception"):
        preprocessing.get_preprocessing("caffe")
