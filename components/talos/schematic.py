"""Image Factory schematics: which extensions a node gets, the schematic in
the factory's YAML form, its ID computed offline exactly as the factory
computes it, and the installer image that names it.

The factory (siderolabs/image-factory ``pkg/schematic/schematic.go``,
``Schematic.ID``) takes the lowercase hex SHA-256 of its own ``Marshal`` of
the decoded struct. So the ID depends on the canonical form, not on how the
file was written: ``{}`` and ``customization: {}\\n`` have the same ID. A
schematic this program renders is already that canonical form
(:func:`render_schematic` is the struct's ``Marshal``), so its ID is the
hash of the rendered bytes (:func:`factory_id`); a schematic written by hand
is decoded and marshalled first (:func:`schematic_id`). The format itself is
in :mod:`components.talos.schematic_format`.

The factory marshals with ``go.yaml.in/yaml/v4`` since image-factory v1.0.0
(v1.5.0 pins v4.0.0-rc.6+); earlier releases used ``gopkg.in/yaml.v3``.
Every ID the factory's own tests publish is the same in both.
``yaml_version`` selects the dialect; the default is the current factory's.
The vectors in ``tests/talos/factory_vectors_v4.json`` (made with yaml/v4)
and ``tests/talos/factory_vectors.json`` (made with yaml.v3) pin both.

The factory does not sort extensions; :func:`extensions_for` does, so the same
set always gives the same ID.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from components.config import ConfigError, ConfigIssue, TalosConfig, parse_version
from components.talos.schematic_format import MetaValue, Overlay, Schematic, YamlVersion, marshal, parse_schematic

FACTORY = "factory.talos.dev"

# Extension names (siderolabs/extensions; Talos 1.8 "What's new": -lts / -production
# variants of every NVIDIA extension). Pair lts with lts, production with
# production: the kmod and the toolkit ship matching driver versions.
_KMOD = {
    "proprietary": "siderolabs/nonfree-kmod-nvidia-{branch}",
    "open": "siderolabs/nvidia-open-gpu-kernel-modules-{branch}",
}
_TOOLKIT = "siderolabs/nvidia-container-toolkit-{branch}"
_NVIDIA_DRIVER_OR_TOOLKIT = re.compile(
    r"^siderolabs/(nonfree-kmod-nvidia|nvidia-open-gpu-kernel-modules|nvidia-container-toolkit)(-.*)?$"
)


# --------------------------------------------------------------------------
# Which extensions
# --------------------------------------------------------------------------


def extensions_for(talos: TalosConfig) -> list[str]:
    """The sorted extension set for a node: the NVIDIA kernel modules and the
    container toolkit of one branch, plus ``talos.extensions.extra``.

    An NVIDIA driver or toolkit listed in ``extra`` is refused: it would pair a
    second driver (or another branch) with the chosen one."""
    ext = talos.extensions
    issues: list[ConfigIssue] = []
    if parse_version(talos.version) < (1, 8, 0):
        issues.append(ConfigIssue(
            "talos.version", talos.version,
            "the NVIDIA extensions come in -lts/-production variants from Talos v1.8 on; use v1.8 or newer",
        ))
    for index, name in enumerate(ext.extra):
        if _NVIDIA_DRIVER_OR_TOOLKIT.match(name):
            issues.append(ConfigIssue(
                f"talos.extensions.extra[{index}]", name,
                "the NVIDIA kernel modules and container toolkit come from talos.extensions.driver "
                f"({ext.driver}) and talos.extensions.branch ({ext.branch}), always as a matching pair; "
                "remove this entry and set driver/branch instead",
            ))
    if issues:
        raise ConfigError(issues)
    wanted = {_KMOD[ext.driver].format(branch=ext.branch), _TOOLKIT.format(branch=ext.branch), *ext.extra}
    return sorted(wanted)


def installer_image(schematic_id: str, version: str, platform: str = "metal") -> str:
    """The factory installer image for a schematic and Talos version.

    From Talos v1.10 the factory serves platform installers,
    ``<platform>-installer/<id>:<version>``, which keep the platform's kernel
    arguments (siderolabs/image-factory#210, siderolabs/omni#1054). Before
    v1.10 only the generic ``installer/`` form exists."""
    if not re.fullmatch(r"[0-9a-f]{64}", schematic_id):
        raise ValueError(f"schematic ID {schematic_id!r} is not 64 lowercase hex digits")
    if not re.fullmatch(r"[a-z0-9-]+", platform):
        raise ValueError(f"platform {platform!r} is not a Talos platform name like metal or nocloud")
    if parse_version(version) >= (1, 10, 0):
        return f"{FACTORY}/{platform}-installer/{schematic_id}:{version}"
    return f"{FACTORY}/installer/{schematic_id}:{version}"


# --------------------------------------------------------------------------
# The schematic, its ID and the installer
# --------------------------------------------------------------------------


def render_schematic(
    extensions: Iterable[str],
    extra_kernel_args: Sequence[str] = (),
    meta: Mapping[int, str] | None = None,
    *,
    overlay: Overlay | None = None,
    secureboot_include_well_known_certificates: bool = False,
) -> str:
    """The schematic in the factory's canonical YAML (what it hashes).

    Extensions are written in the order given: pass them sorted
    (:func:`extensions_for` does)."""
    schematic = Schematic(
        extra_kernel_args=tuple(extra_kernel_args),
        meta=tuple(MetaValue(key, value) for key, value in sorted((meta or {}).items())),
        official_extensions=tuple(extensions),
        secureboot_include_well_known_certificates=secureboot_include_well_known_certificates,
        overlay=overlay or Overlay(),
    )
    return marshal(schematic)


def schematic_id(yaml_text: str, yaml_version: YamlVersion = "v4") -> str:
    """The factory's ID for a schematic written in its format (YAML or JSON);
    ``yaml_version="v3"`` gives what image-factory releases before v1.0.0
    computed."""
    return factory_id(marshal(parse_schematic(yaml_text), yaml_version))


def factory_id(marshalled: str) -> str:
    """The ID of a schematic already in the factory's marshalled form (what
    :func:`render_schematic` returns): the hex SHA-256 of exactly those bytes."""
    return hashlib.sha256(marshalled.encode()).hexdigest()


def planned_installer(talos: TalosConfig) -> tuple[str, str, str]:
    """This stack's schematic YAML, its ID (computed offline) and installer
    image: what the node should run."""
    schematic_yaml = render_schematic(extensions_for(talos))
    sid = factory_id(schematic_yaml)  # rendered once: these bytes are what the factory hashes
    return schematic_yaml, sid, installer_image(sid, talos.version, talos.platform)
