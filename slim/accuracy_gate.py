"""The accuracy gate of a reduced-precision model: its top-1 on the labelled validation split
must be at least ``MIN_RATIO`` (99 %) of the fp32 model's.

The same rule as the int8 gate of the ONNX conversion (helper `convert` is building that one
in slim/convert/; this small function stands alone until the two can share one).  For bf16 the
fp32 model is the same checkpoint evaluated with compute=fp32 on the same images, so the gate
measures what bf16 arithmetic costs, as the int8 gate measures what quantisation costs.
"""
from __future__ import annotations

MIN_RATIO = 0.99


def verdict(top1: float, reference_top1: float, *, precision: str = "bf16",
            min_ratio: float = MIN_RATIO) -> dict:
    """{"passed", "top1", "reference_top1", "ratio", "min_ratio", "precision", "reason"}.

    A reference of 0 (an untrained net) passes only when the candidate is 0 too: the ratio is
    undefined and nothing was lost."""
    ratio = top1 / reference_top1 if reference_top1 > 0 else (1.0 if top1 >= 0 else 0.0)
    passed = ratio >= min_ratio
    reason = "" if passed else (f"{precision} top-1 {top1:.4f} is {ratio:.1%} of fp32's "
                                f"{reference_top1:.4f}; the gate needs {min_ratio:.0%}")
    return {"passed": passed, "precision": precision, "top1": top1,
            "reference_top1": reference_top1, "ratio": ratio, "min_ratio": min_ratio,
            "reason": reason}


def require_for_publish(model: str, compute: str, eval_metrics: dict | None) -> None:
    """UserError (one line) unless a reduced-precision export's eval passed the gate."""
    from zoobuild.errors import UserError

    if compute in (None, "fp32"):
        return
    gate = (eval_metrics or {}).get("gate")
    if gate is None:
        raise UserError(f"publish {model}: compute={compute} needs its accuracy gate; run "
                        f"`doit eval model={model} compute={compute}` first")
    if not gate["passed"]:
        raise UserError(f"publish {model}: refused by the accuracy gate: {gate['reason']}")
