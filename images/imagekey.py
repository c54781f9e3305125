"""Image keys and labels, computed without an engine.

An image's key (zoobuild/keys.py) covers: the code that builds images (the import closure of ENTRIES), its tag, its
generated Dockerfile text and build args (FROM_IMAGE among them), the content of its build
context (files, wheels and .debs by their wheelhouse sha256, downloads, the model package's
content key) and, for an image FROM another of the plan, that parent's key.  Keys chain down
the layer graph: a parent whose key changes makes every image below it stale, and any key is
known before anything is built, so `doit` can ask for it at load time on a machine with no
engine.  The image carries its key as the label `org.zoobuild.key`.
"""
from __future__ import annotations

from pathlib import Path

from images import plan as plan_mod
from zoobuild import gitrev, keys
from zoobuild.errors import UserError

KEY_LABEL = "org.zoobuild.key"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
# the code that turns a key's inputs into an image: context assembly and the build call
ENTRIES = ("images.build",)  # the key's code: the computed import closure of the build module


def image_ref(tag: str) -> str:
    """tag with the engine's implicit `:latest` made explicit."""
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _memo(plan, what, img, compute):
    if plan.memo is None:
        return compute()
    if (what, img.tag) not in plan.memo:
        plan.memo[(what, img.tag)] = compute()
    return plan.memo[(what, img.tag)]


def _wheelhouse_stamp() -> tuple:
    """Changes when `doit wheelhouse` or `doit build_wheel` rewrote their records: both run
    inside the same doit run as the image builds, so a remembered image key must not outlive them."""
    from images import wheelhouse

    out = []
    for path in (wheelhouse.wheelhouse_dir() / "index.json", wheelhouse.selected_wheel_file()):
        try:
            st = path.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))   # both are replaced, never edited
        except OSError:
            out.append(None)
    return tuple(out)


# --- model packages -----------------------------------------------------------------------

def package_entries(plan, img):
    """(archive name, source) entries of img's model package, model.json included."""
    from images import package

    pkg = img.slice.package
    files = [(f.source, f.destination) for f in pkg.files]
    return package.collect(files, plan.spec.root, {"model.json": package.model_json(pkg.name, img.args)})


def package_key_of(img, entries) -> keys.Key:
    """The package's key: the content of what goes in (walked through the hash cache)."""
    from images import package

    return keys.make_key("package", entries=["images.package"], params={"name": img.slice.package.name},
                         inputs={"content": package.content_digest(entries)})


def package_key(plan, img) -> keys.Key:
    return _memo(plan, "package", img, lambda: package_key_of(img, package_entries(plan, img)))


def package_path(plan, img, key=None) -> Path:
    key = key or package_key(plan, img)
    name = img.slice.package.name
    return keys.run_dir("packages", name, key) / f"{name}.tar.gz"


# --- what the build context holds ---------------------------------------------------------

def _wheelhouse_index(plan, img, reqs) -> dict | None:
    if not (reqs or img.slice.debs):
        return None
    from images import wheelhouse

    return wheelhouse.read_index(wheelhouse.wheelhouse_dir())


def context_inputs(plan, img) -> dict:
    """Content digests of everything the image's build context holds (besides the Dockerfile)."""
    root = plan.spec.root
    inputs = {}
    for f in img.slice.files:
        inputs[f"file:{f.destination}"] = keys.tree_digest(root / f.source)
    for d in img.slice.downloads:
        inputs[f"download:{d.destination}"] = d.sha256
    reqs = plan_mod.image_requirements(plan, img)
    index = _wheelhouse_index(plan, img, reqs)
    for r in reqs:
        entry = index["wheels"].get(r)
        if entry is None:
            raise UserError(f"wheelhouse has no wheel for {r}: run `doit wheelhouse`")
        inputs[f"wheel:{r}"] = entry["sha256"]
    for d in img.slice.debs:
        entry = index["debs"].get(d)
        if entry is None:
            raise UserError(f"wheelhouse has no .deb for {d}: run `doit wheelhouse`")
        inputs[f"deb:{d}"] = entry["sha256"]
    if img.slice.package is not None:
        inputs["package"] = package_key(plan, img).hex
    return inputs


def context_summary(plan, img) -> dict:
    """What build.prepare_context puts into img's build context, by name."""
    summary = {"files": [f.destination for f in img.slice.files] +
               [d.destination for d in img.slice.downloads], "wheels": [], "debs": [], "package": None}
    reqs = plan_mod.image_requirements(plan, img)
    index = _wheelhouse_index(plan, img, reqs)
    if index is not None:
        summary["wheels"] = [index["wheels"][r]["file"] for r in reqs]
        summary["debs"] = [index["debs"][d]["file"] for d in img.slice.debs]
    if img.slice.package is not None:
        summary["package"] = f"{img.slice.package.name}.tar.gz"
    return summary


# --- the key ------------------------------------------------------------------------------

def image_key(plan, img) -> keys.Key:
    """img's key, its parent's key chained in; raises UserError when the wheelhouse lacks a
    wheel img installs (its key is unknown until `doit wheelhouse` ran)."""
    def compute():
        inputs = context_inputs(plan, img)
        parent = plan.parent_of(img)
        if parent is not None:
            inputs["parent"] = image_key(plan, parent).hex
        return keys.make_key("image", entries=ENTRIES,
                             params={"tag": img.tag, "from": img.base_image, "dockerfile": img.dockerfile,
                                     "build_args": img.build_args},
                             inputs=inputs)

    return _memo(plan, ("image", _wheelhouse_stamp()), img, compute)


def carries_key(labels: dict, key: keys.Key, from_id: str) -> bool:
    """An engine's image with these labels is img built for `key`, FROM the image whose id is
    from_id now.  The second half catches what a key cannot know: a base image pulled anew
    under the same tag, or a parent rebuilt with nocache."""
    return labels.get(KEY_LABEL) == key.hex and labels.get(BASE_DIGEST_LABEL) == from_id


def labels_for(plan, img, key: keys.Key, from_id: str) -> dict:
    repo, _, tag = image_ref(img.tag).rpartition(":")
    return {
        KEY_LABEL: key.hex,
        "org.zoobuild.spec": ",".join(img.spec_files),
        "org.zoobuild.slice": f"{img.slice.set_name}[{img.slice.index}]",
        "org.zoobuild.partials": ",".join(img.slice.partials),
        "org.zoobuild.parent": img.base_image,
        "org.opencontainers.image.title": img.name,
        "org.opencontainers.image.ref.name": tag,
        "org.opencontainers.image.revision": gitrev.label(plan.spec.root),
        "org.opencontainers.image.base.name": img.base_image,
        BASE_DIGEST_LABEL: from_id,
        "org.opencontainers.image.description": f"{img.tag} from {img.dockerfile_path}",
    }
