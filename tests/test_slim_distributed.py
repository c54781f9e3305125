"""Parameter-server training on TF's gRPC runtime: 1 ps + 2 workers on loopback,
synchronous replicas, started by the local launcher."""
import json

import pytest

from slim import distributed
from zoobuild.errors import UserError
from test_slim_common import SMALL, dataset_dir  # noqa: F401


def test_cluster_description_is_validated(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("ps: ['10.0.0.1:2222']\nworker: ['10.0.0.2:2222', 'h3:2223']\n")
    assert distributed.load_cluster(good) == {"ps": ["10.0.0.1:2222"],
                                              "worker": ["10.0.0.2:2222", "h3:2223"]}
    for text, what in [('{"ps": ["a:1"]}', "worker"), ('{"worker": ["a"]}', "host:port"),
                       ('{"worker": ["a:1"], "chief": ["b:2"]}', "chief"), ("{", "JSON")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(UserError, match=what):
            distributed.load_cluster(bad)


@pytest.mark.slow
def test_one_ps_two_workers_sync_replicas_reach_target_and_loss_falls(dataset_dir, tmp_path):
    from slim import eval as slim_eval

    cluster = distributed.local_cluster(num_ps=1, num_workers=2)
    cfg = {**SMALL, "steps": 40, "sync_replicas": True, "replicas_to_aggregate": 2,
           "learning_rate": 0.01}
    run = tmp_path / "dist"
    summary = distributed.launch_local(cfg, dataset_dir, run, cluster, timeout=900)
    assert summary["global_step"] == 40
    for worker in (0, 1):   # both workers took part
        assert (run / f"history-worker{worker}.jsonl").read_text().strip()
    assert json.loads((run / "cluster.json").read_text()) == cluster
    ev_cfg = {**cfg, "eval_split_name": "train"}
    start = slim_eval.evaluate(ev_cfg, dataset_dir, run / "model.ckpt-0")
    end = slim_eval.evaluate(ev_cfg, dataset_dir, run)
    assert end["global_step"] == 40
    assert end["loss"] < start["loss"]
