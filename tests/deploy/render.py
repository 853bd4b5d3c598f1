"""A tiny Kustomize renderer: exactly the subset deploy/k8s uses, so tests run without kustomize.

``kubectl kustomize deploy/k8s/overlays/<env>`` is the renderer of record; this one exists so the
suite can validate the manifests on a machine without kubectl, and ``test_k8s.py`` checks that
both give the same objects wherever kubectl is installed.

Supported ``kustomization.yaml`` fields (anything else raises, so the subset cannot drift):

* ``resources``: files, or folders holding a ``kustomization.yaml`` (rendered recursively);
* ``namespace``: set on every object (everything in this tree is namespaced);
* ``labels``: ``pairs`` added to ``metadata.labels`` only (no selectors, no templates);
* ``images``: ``name`` with ``newName`` and/or ``newTag``, applied to containers' ``image``;
* ``patches``: ``path`` to strategic-merge patches matched by kind and name; maps merge,
  lists of maps with a ``name`` merge by name, other lists are replaced, and
  ``$patch: delete`` at the top removes the object.

Order as in kustomize: the resources (each already rendered by its own kustomization), then the
patches, then namespace, labels and images.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

_KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}


def load_docs(path: Path) -> list[Obj]:
    """Every non-empty YAML document of ``path``."""
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def key(obj: Obj) -> tuple[str, str]:
    """``(kind, name)``: how patches find their target and tests compare renderings."""
    return obj["kind"], obj["metadata"]["name"]


def render(folder: Path) -> list[Obj]:
    """The objects ``folder/kustomization.yaml`` builds."""
    spec = load_docs(folder / "kustomization.yaml")[0]
    unknown = set(spec) - _KNOWN
    if unknown:
        raise ValueError(f"{folder}: kustomization fields outside the subset: {sorted(unknown)}")
    objs: list[Obj] = []
    for entry in spec.get("resources", []):
        target = folder / entry
        objs.extend(render(target) if target.is_dir() else load_docs(target))
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{folder}: only file patches (path) are supported: {patch}")
        for doc in load_docs(folder / patch["path"]):
            objs = _apply_patch(objs, doc)
    for obj in objs:
        if "namespace" in spec:
            obj["metadata"]["namespace"] = spec["namespace"]
        for group in spec.get("labels", []):
            if set(group) != {"pairs"}:
                raise ValueError(f"{folder}: labels support pairs only: {group}")
            obj["metadata"].setdefault("labels", {}).update(group["pairs"])
        for image in spec.get("images", []):
            _set_image(obj, image)
    return objs


def _apply_patch(objs: list[Obj], patch: Obj) -> list[Obj]:
    patch = copy.deepcopy(patch)
    delete = patch.pop("$patch", None) == "delete"
    matched = [o for o in objs if key(o) == key(patch)]
    if len(matched) != 1:
        raise ValueError(f"patch target {key(patch)} matches {len(matched)} objects")
    if delete:
        return [o for o in objs if o is not matched[0]]
    return [_merge(o, patch) if o is matched[0] else o for o in objs]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if _named_list(base) and _named_list(patch):
        by_name = {item["name"]: item for item in patch}
        merged = [_merge(item, by_name.pop(item["name"], {})) for item in base]
        return merged + list(by_name.values())
    return copy.deepcopy(patch)


def _named_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, dict) and "name" in i for i in value)
    )


def _set_image(obj: Obj, image: Obj) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
