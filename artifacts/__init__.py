"""Versioned model artifacts: an fsspec store, X.Y.Z rules, manifests, the catalog and fetch.

Usable without doit:

    from artifacts import store, fetch, catalog
    st = store.open_store("s3://bucket/zoo")
    store.publish(st, "vgg_16", "1.0.0", "x86_64", payload_dir, manifest)
    fetch.fetch(st, "vgg_16", "^1.0", dest)
"""
