"""ps/worker training on Kubernetes, in two forms, built from the kubernetes client's models:

* a Kubeflow TFJob (kubeflow.org/v1): PS and Worker replicas; the training operator sets
  TF_CONFIG and worker 0 is the chief (slim's convention: task 0 of `worker`);
* a plain batch/v1 Job per replica plus one headless Service, for clusters without the
  training operator: each pod gets a stable DNS name (hostname + subdomain) and the
  TF_CONFIG that names it.

Every pod runs the model image with `python -m slim.stage train --job /etc/zoobuild/job.json
--tf-config`; job.json comes from a ConfigMap, the data set and the training directory from
a shared volume claim mounted at /zoobuild.
"""
from __future__ import annotations

import json
import re

from zoobuild.errors import UserError

PORT = 2222
JOB_MOUNT = "/etc/zoobuild"
DATA_MOUNT = "/zoobuild"


def parse_cluster(text: str) -> dict:
    """`k8s:ps=P,workers=N` -> {"ps": P, "workers": N}; one line when it is anything else."""
    m = re.fullmatch(r"k8s:(.*)", text or "")
    fields = dict(kv.partition("=")[::2] for kv in m.group(1).split(",")) if m else None
    try:
        spec = {"ps": int(fields.pop("ps", 1)), "workers": int(fields.pop("workers"))} if fields is not None else None
    except (KeyError, ValueError):
        spec = None
    if spec is None or fields:
        raise UserError(f"cluster={text!r}: expected k8s:ps=P,workers=N (N >= 1), "
                        f"for example cluster=k8s:ps=1,workers=2")
    if spec["workers"] < 1 or spec["ps"] < 0:
        raise UserError(f"cluster={text!r}: workers must be >= 1 and ps >= 0 "
                        f"(got workers={spec['workers']}, ps={spec['ps']})")
    return spec


def _container(image: str, cpu: str, memory: str, env=None):
    from kubernetes import client as k

    return k.V1Container(
        name="tensorflow",  # the training operator looks for this container name
        image=image, command=["python3", "-m", "slim.stage", "train", "--job",
                              f"{JOB_MOUNT}/job.json", "--tf-config"],
        ports=[k.V1ContainerPort(container_port=PORT, name="tfjob-port")],
        env=env or None,
        resources=k.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}),
        volume_mounts=[k.V1VolumeMount(name="job", mount_path=JOB_MOUNT, read_only=True),
                       k.V1VolumeMount(name="data", mount_path=DATA_MOUNT)])


def _pod(name: str, container, labels: dict, claim: str, hostname=None, subdomain=None, restart="OnFailure"):
    from kubernetes import client as k

    return k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels=labels),
        spec=k.V1PodSpec(
            containers=[container], restart_policy=restart, hostname=hostname, subdomain=subdomain,
            volumes=[k.V1Volume(name="job", config_map=k.V1ConfigMapVolumeSource(name=f"{name}-job")),
                     k.V1Volume(name="data", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                         claim_name=claim))]))


def config_map(name: str, job: dict):
    from kubernetes import client as k

    return k.V1ConfigMap(api_version="v1", kind="ConfigMap", metadata=k.V1ObjectMeta(name=f"{name}-job"),
                         data={"job.json": json.dumps(job, indent=1, sort_keys=True)})


def tfjob(name: str, image: str, spec: dict, claim: str, cpu="2", memory="4G") -> dict:
    """The TFJob manifest (a dict: kubeflow.org/v1 has no model in the kubernetes client;
    its pod templates are V1PodTemplateSpec)."""
    from kubernetes import client as k

    api = k.ApiClient()
    replicas = {}
    for rtype, count in (("PS", spec["ps"]), ("Worker", spec["workers"])):
        if count:
            pod = _pod(name, _container(image, cpu, memory), {"app": name}, claim)
            replicas[rtype] = {"replicas": count, "restartPolicy": "OnFailure",
                               "template": api.sanitize_for_serialization(pod)}
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
            "metadata": {"name": name},
            "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": replicas}}


def tf_config(name: str, spec: dict, job_name: str, index: int) -> dict:
    hosts = {"ps": [f"{name}-ps-{i}.{name}:{PORT}" for i in range(spec["ps"])],
             "worker": [f"{name}-worker-{i}.{name}:{PORT}" for i in range(spec["workers"])]}
    return {"cluster": {j: h for j, h in hosts.items() if h}, "task": {"type": job_name, "index": index}}


def plain_jobs(name: str, image: str, spec: dict, claim: str, cpu="2", memory="4G") -> list:
    """A headless Service and one batch/v1 Job per replica, each setting its own TF_CONFIG."""
    from kubernetes import client as k

    objs = [k.V1Service(api_version="v1", kind="Service", metadata=k.V1ObjectMeta(name=name),
                        spec=k.V1ServiceSpec(cluster_ip="None", selector={"zoobuild/cluster": name},
                                             ports=[k.V1ServicePort(port=PORT, name="grpc")]))]
    for job_name, count in (("ps", spec["ps"]), ("worker", spec["workers"])):
        for i in range(count):
            host = f"{name}-{job_name}-{i}"
            env = [k.V1EnvVar(name="TF_CONFIG", value=json.dumps(tf_config(name, spec, job_name, i)))]
            pod = _pod(name, _container(image, cpu, memory, env),
                       {"zoobuild/cluster": name, "zoobuild/replica": host}, claim,
                       hostname=host, subdomain=name, restart="OnFailure")
            objs.append(k.V1Job(api_version="batch/v1", kind="Job", metadata=k.V1ObjectMeta(name=host),
                                spec=k.V1JobSpec(template=pod, backoff_limit=3)))
    return objs


def manifests(name: str, image: str, spec: dict, job: dict, claim: str = "zoobuild-data",
              cpu="2", memory="4G") -> dict:
    """{"tfjob": [docs], "jobs": [docs]}: lists of plain dicts ready for yaml.safe_dump_all."""
    from kubernetes import client as k

    api = k.ApiClient()
    cm = api.sanitize_for_serialization(config_map(name, job))
    return {"tfjob": [cm, tfjob(name, image, spec, claim, cpu, memory)],
            "jobs": [cm] + [api.sanitize_for_serialization(o)
                            for o in plain_jobs(name, image, spec, claim, cpu, memory)]}
