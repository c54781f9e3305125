"""build_wheel: a CPU-tuned wheel built from a recipe in a builder container.

    doit build_wheel                                # zoobuild-native for haswell (+avx2)
    doit build_wheel target=x86-64                  # baseline build (+baseline)
    doit build_wheel recipe=tensorflow target=native  # the real TensorFlow wheel (needs network)
    doit build_wheel wheel=stock                    # select the pinned tensorflow-cpu instead

Output: build/wheels/<recipe>/<target>/<key12>/ (wheel, build.json, build.log),
a copy in the wheelhouse, and build/wheels/selected.json, which tf-compiled-base reads.
With `cache=`, a wheel another machine built under the same key is fetched, not built.
"""
from pathlib import Path

from images import cpu
from zoobuild import paths
from tasks.errors import UserError, guarded
from tasks.params import Var

__all__ = ["task_build_wheel"]


def _recipe_names():
    return sorted(p.stem for p in (paths.ROOT / "images" / "wheel" / "recipes").glob("*.yml"))


RECIPE = Var("recipe", str, "zoobuild-native", "wheel recipe under images/wheel/recipes/",
             choices=_recipe_names())
TARGET = Var("target", str, "haswell", "CPU target the wheel is compiled for", choices=cpu.TARGET_NAMES)
WHEEL = Var("wheel", str, "compiled", "compiled: build the recipe; stock: use the pinned tensorflow-cpu",
            choices=("compiled", "stock"))


def _build(recipe, target):
    from images import wheelbuild
    from tasks.cache import shared_cache

    wheelbuild.build(wheelbuild.plan(recipe, target), cache=shared_cache())


def _select_stock():
    from images import wheelbuild

    wheelbuild.select_stock()


def _current(plan):
    def check(task, values):
        from images import wheelbuild

        return wheelbuild.is_current(plan)

    check.__name__ = f"wheel:{plan.key.short}"
    return check


def _stock_current(task, values):
    from images import wheelbuild

    return not wheelbuild.selected_path().exists()


def task_build_wheel():
    """Build a CPU-tuned wheel from a recipe in a builder container (vars: recipe, target, wheel)."""
    from images import wheelbuild

    if WHEEL.get() == "stock":
        yield {"name": "stock", "actions": [guarded(_select_stock)], "uptodate": [_stock_current],
               "verbosity": 2,
               "doc": "select the pinned tensorflow-cpu wheel"}
        return
    recipe, target = RECIPE.get(), TARGET.get()
    try:
        plan = wheelbuild.plan(recipe, target)
    except UserError as err:  # bad recipe: the task fails with the one line, the graph still loads
        yield {"name": f"{recipe}-{target}", "actions": [guarded(_raiser(err))], "verbosity": 2}
        return
    yield {
        "name": f"{recipe}-{target}",
        "doc": f"{recipe} for {target} (+{plan.target.label}) -> {Path(plan.outdir).relative_to(paths.BUILD.parent)}",
        "actions": [(guarded(_build), (recipe, target))],
        "uptodate": [_current(plan)],
        "targets": [str(wheelbuild.selected_path())],
        "verbosity": 2,
    }


def _raiser(err):
    def fail():
        raise err

    return fail
