"""ILSVRC2012 -> slim TFRecords, the synthetic mini-ILSVRC and the tf.data reader.

Usable without doit.  Importing this package is light: tensorflow is only
imported by `datasets.reader`, Pillow only where an image must be decoded.

    datasets.synthetic.make_mini_ilsvrc(out_dir)          # raw ImageNet layout
    datasets.convert.convert(data_dir, out_dir)           # slim TFRecord shards
    datasets.reader.dataset(out_dir, 'train', 32)         # tf.data pipeline
"""
