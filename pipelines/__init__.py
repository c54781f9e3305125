"""The doit graph on a cluster: Kubeflow Pipelines v2 and Kubernetes training manifests.

A library (layer 2): it receives a plain description of the stages (image, key, job,
parameters, resources) from tasks/pipeline.py and turns it into KFP components and a
pipeline compiled by the kfp SDK (graph.py, compile.py), ps/worker manifests (k8s.py), and a
run of the compiled components on the local engine through kfp.local (local.py).  Each
component runs `python -m slim.stage STAGE ...` inside the graph's own image.
"""
