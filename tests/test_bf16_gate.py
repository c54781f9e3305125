"""The bf16 accuracy gate: the rule, publish refusing without it, manifest and catalog with it."""
import json

import pytest

from test_post_fixtures import tiny_saved_model
from zoobuild.errors import UserError


def test_gate_rule_is_99_percent_of_fp32():
    from slim.accuracy_gate import verdict

    assert verdict(0.990, 1.0)["passed"]
    failed = verdict(0.989, 1.0)
    assert not failed["passed"] and "98.9% of fp32's" in failed["reason"] and "99%" in failed["reason"]
    assert verdict(0.5, 0.4)["passed"]             # better than fp32 passes
    assert verdict(0.0, 0.0)["passed"]             # nothing to lose
    assert not verdict(0.0, 0.1)["passed"]


def test_publish_needs_a_passed_gate_for_bf16():
    from slim.accuracy_gate import require_for_publish, verdict

    require_for_publish("vgg_16", "fp32", None)    # fp32 publishes as before
    with pytest.raises(UserError, match="run `doit eval model=vgg_16 compute=bf16` first"):
        require_for_publish("vgg_16", "bf16", {"top1": 0.5})
    with pytest.raises(UserError, match="refused by the accuracy gate: bf16 top-1 0.5000 is 50.0%"):
        require_for_publish("vgg_16", "bf16", {"gate": verdict(0.5, 1.0)})
    require_for_publish("vgg_16", "bf16", {"gate": verdict(0.995, 1.0)})


def test_bf16_release_carries_the_gate_in_manifest_and_catalog(tmp_path):
    from artifacts import catalog, release, store as st
    from slim.accuracy_gate import verdict

    export = tiny_saved_model(tmp_path / "export")
    store = st.open_store(str(tmp_path / "store"))
    ev = {"compute": "bf16", "top1": 0.745, "top5": 1.0,
          "reference": {"compute": "fp32", "top1": 0.75}, "gate": verdict(0.745, 0.75)}
    with pytest.raises(UserError, match="failed the accuracy gate"):
        release.release(store, "tiny", "1.0.0", export_dir=export, progress=lambda *_: None,
                        eval_metrics={**ev, "gate": verdict(0.5, 0.75)})
    assert not (tmp_path / "store" / "models" / "tiny").exists()
    m = release.release(store, "tiny", "1.0.0", export_dir=export, progress=lambda *_: None, eval_metrics=ev)
    saved = [a for a in m["artifacts"] if a["format"] == "savedmodel"]
    assert [a["precision"] for a in saved] == ["fp32", "bf16"]
    assert saved[1]["gate"]["passed"] and saved[1]["gate"]["reference_top1"] == 0.75
    assert m["eval"]["gate"]["passed"]
    rows = json.loads((tmp_path / "store" / "index.json").read_text())["models"]["tiny"]["versions"]["1.0.0"]
    rows = next(iter(rows.values()))["rows"]
    assert {(r["precision"], r["top1"]) for r in rows} >= {("fp32", 0.75), ("bf16", 0.745)}
    table = (tmp_path / "store" / "MODELS.md").read_text()
    assert "| bf16 | savedmodel | 0.745 (gate: 99.3% of fp32) |" in table
    assert "| fp32 | savedmodel | 0.750 |" in table
