"""Will this wheel install and run there?  ABI (packaging.tags) and ISA checks.

ABI: a wheel's file name carries its tags (cp311-cp311-linux_x86_64).  An
image accepts the tags its Python would compute with ``packaging.tags``; we ask
the image itself (a short ``python3 -c`` in a container with no network) for
its interpreter version, ABI, platform and glibc, and compute the tag list
from those here, so the image needs no packaging module.  The answer is
cached per image id.  A wheel none of whose tags the image accepts is refused
with one line — the classic cp35-wheel-in-a-3.11-image trap.

ISA: a wheel built for a CPU target needs that target's instructions.  The
requirement comes from ``zoobuild_isa.json`` inside the wheel when present,
else from the local version label (``+avx2`` -> haswell's features).  A host
(or the ZOOBUILD_CPU_FLAGS override) lacking one is refused with one line
before anything is installed, instead of an illegal-instruction crash later.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from images import cpu
from zoobuild import atomic, paths
from zoobuild.errors import UserError

# Asked inside the image: everything packaging.tags needs, from the stdlib only.
PROBE = ("import json, platform, sys, sysconfig; "
         "print(json.dumps({'implementation': sys.implementation.name, "
         "'version': list(sys.version_info[:2]), 'soabi': sysconfig.get_config_var('SOABI') or '', "
         "'platform': sysconfig.get_platform(), 'glibc': platform.libc_ver()[1], "
         "'debug': bool(sysconfig.get_config_var('Py_DEBUG'))}))")


@dataclass(frozen=True)
class ImageTags:
    """The tags an image's Python accepts, most preferred first."""
    image: str
    python: str            # "3.11"
    glibc: str             # "2.36"
    tags: tuple[str, ...]

    def accepts(self, wheel_tags) -> bool:
        return bool(set(self.tags) & set(wheel_tags))


def _platforms(platform: str, glibc: str) -> list[str]:
    """manylinux/linux platform tags a glibc-based Linux Python accepts (as pip computes them)."""
    plat = platform.replace("-", "_").replace(".", "_")          # linux_x86_64
    if not plat.startswith("linux_"):
        return [plat]
    arch = plat[len("linux_"):]
    out = []
    if glibc:
        major, minor = (int(x) for x in glibc.split(".")[:2])
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        for m in range(minor, 4, -1):
            out.append(f"manylinux_{major}_{m}_{arch}")
            if m in legacy and arch in ("x86_64", "i686"):
                out.append(f"{legacy[m]}_{arch}")
    return out + [plat]


def tags_for(info: dict, image: str = "") -> ImageTags:
    """Tags from a probe answer (implementation, version, soabi, platform, glibc)."""
    from packaging import tags

    major, minor = info["version"]
    platforms = _platforms(info["platform"], info.get("glibc", ""))
    interp = f"cp{major}{minor}" if info["implementation"] == "cpython" else f"{info['implementation'][:2]}{major}{minor}"
    if info["implementation"] == "cpython":
        abi = f"cp{major}{minor}" + ("d" if info.get("debug") else "")
        found = list(tags.cpython_tags((major, minor), abis=[abi], platforms=platforms))
    else:
        found = list(tags.generic_tags(interp, abis=[info.get("soabi", "").replace("-", "_").replace(".", "_")],
                                       platforms=platforms))
    found += list(tags.compatible_tags((major, minor), interpreter=interp, platforms=platforms))
    return ImageTags(image, f"{major}.{minor}", info.get("glibc", ""), tuple(str(t) for t in found))


def probe_image(client, image: str) -> dict:
    """Run PROBE in the image (no network), cached by image id under build/abi/."""
    import docker.errors

    try:
        img = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {image} does not exist; build it first") from None
    cache = paths.BUILD / "abi" / f"{img.id.split(':')[-1][:16]}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    try:
        out = client.containers.run(image, ["python3", "-c", PROBE], entrypoint=[], network_mode="none",
                                    remove=True, stderr=True)
    except docker.errors.ContainerError as err:
        raise UserError(f"image {image}: cannot ask its python3 for its tags "
                        f"({str(err.stderr or err).strip().splitlines()[-1:]})") from None
    info = json.loads(out.decode().strip().splitlines()[-1])
    atomic.write_text(cache, json.dumps(info))
    return info


def image_tags(client, image: str) -> ImageTags:
    return tags_for(probe_image(client, image), image)


def wheel_tags(wheel) -> set[str]:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        return {str(t) for t in parse_wheel_filename(Path(wheel).name)[3]}
    except InvalidWheelFilename as err:
        raise UserError(f"{Path(wheel).name}: not a valid wheel file name ({err})") from None


def wheel_version(wheel):
    from packaging.utils import parse_wheel_filename

    return parse_wheel_filename(Path(wheel).name)[1]


def check_wheel_tags(wheel, accepted: ImageTags) -> None:
    """Raise one line when no tag of the wheel is accepted by the image's Python."""
    have = sorted(wheel_tags(wheel))
    if accepted.accepts(have):
        return
    where = f"image {accepted.image}" if accepted.image else "the target Python"
    raise UserError(
        f"{Path(wheel).name} is tagged {', '.join(have)} but {where} (Python {accepted.python}, "
        f"glibc {accepted.glibc or '?'}) accepts e.g. {accepted.tags[0]}; build the wheel with "
        f"python: \"{accepted.python}\" in its recipe or change the image's Python")


def check_wheel_for_image(client, wheel, image: str) -> ImageTags:
    """ABI check of a wheel against an image (asks the image); returns the image's tags."""
    accepted = image_tags(client, image)
    check_wheel_tags(wheel, accepted)
    return accepted


# --- ISA --------------------------------------------------------------------------

def wheel_isa(wheel) -> tuple[str, frozenset[str]]:
    """(target description, required CPU features) of a wheel."""
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.endswith("/zoobuild_isa.json"):
                    info = json.loads(z.read(name))
                    return info.get("target", "?"), frozenset(info.get("required", []))
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{wheel}: cannot read wheel ({err})") from None
    label = wheel_version(wheel).local or ""
    target = cpu.BY_LABEL.get(label)
    if target is not None:
        return target.name, target.required
    return (f"+{label}" if label else "generic"), frozenset()


def check_isa(wheel, features: frozenset[str] | None = None, where: str = "this host") -> None:
    """Raise one line when the CPU (default: this host) lacks an instruction set the wheel needs."""
    target, required = wheel_isa(wheel)
    features = cpu.host_features() if features is None else frozenset(features)
    missing = sorted(required - features)
    if missing:
        raise UserError(f"{Path(wheel).name} was built for target {target} and needs CPU features "
                        f"{', '.join(missing)} that {where} lacks; rebuild with "
                        f"`doit build_wheel target={cpu.best_target(features).name}`")


def preflight(client, wheel, image: str, features: frozenset[str] | None = None) -> ImageTags:
    """Both checks before an image installs a wheel: ABI against `image`, ISA against this host."""
    check_isa(wheel, features)
    return check_wheel_for_image(client, wheel, image)


def check_selected(client, image: str, features: frozenset[str] | None = None) -> ImageTags | None:
    """Preflight of the wheel `doit build_wheel` selected (build/wheels/selected.json) against
    `image` (the FROM of tf-compiled-base); None when nothing is selected (stock pins)."""
    sel = paths.BUILD / "wheels" / "selected.json"
    if not sel.exists():
        return None
    try:
        wheel = Path(json.loads(sel.read_text())["wheel"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{sel}: expected JSON with a 'wheel' path") from None
    wheel = wheel if wheel.is_absolute() else sel.parent / wheel   # as images.wheelhouse reads it
    if not wheel.is_file():
        raise UserError(f"{sel}: wheel {wheel} does not exist; run `doit build_wheel`")
    return preflight(client, wheel, image, features)
