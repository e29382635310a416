"""Server-side apply and field ownership, for the kmock API emulator.

kmock stores objects as plain JSON and treats every PATCH as a JSON merge
patch: it knows nothing of field managers. The operator's apply relies on
what the API server does with them, so :class:`conftest.Emulator` runs
applies through :func:`apply` and records other writes with
:func:`update`. What is emulated:

* Field ownership per manager, kept where the API server keeps it:
  ``metadata.managedFields``, one entry per (manager, operation,
  subresource), field sets in the ``fieldsV1`` format (``f:<key>`` nesting).
* An apply (``PATCH`` with ``application/apply-patch+yaml``) by manager M
  sets every field M sends; removes every field M sent last time and no
  longer sends, unless another manager owns it too (then it stays, owned by
  the other one); and leaves every other field alone. It creates the object
  when there is none.
* Sending a value that differs from the live value of a field another
  manager owns is a conflict (409) unless the apply has ``force=true``, which
  takes the field over. Sending the same value shares the field.
* Any other write (merge patch, scale) makes its manager (``?fieldManager=``,
  else the User-Agent's product name) the owner of every field it changed,
  taking them from the others (operation ``Update``).
* A merge patch that sets ``managedFields`` to ``[{}]`` forgets every owner
  before the rest of it is recorded, as the API server documents.
* An apply that changes nothing, field sets included, is no write at all:
  the resourceVersion stays and no watch event goes out.

Simplified, and fine for the objects the operator writes:

* Lists are atomic: one list is one field, owned whole. (The server merges
  some lists by key, e.g. containers by name; the operator always sends whole
  lists, and no test has another manager edit list items.)
* No defaulting, no validation, no ``.`` entries for maps in ``fieldsV1``;
  an empty map is no field (the server omits empty maps).
* Only objects that were applied at least once track ownership (objects
  created with POST and patched by kopf carry no managedFields here), and
  only JSON merge patches are recorded as updates.
* ``status`` is ignored in an apply, as for resources with a status
  subresource.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]
# Fields that identify or version an object: nobody owns them.
UNOWNED: frozenset[Path] = frozenset(
    {
        ("apiVersion",),
        ("kind",),
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("metadata", "uid"),
        ("metadata", "resourceVersion"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
        ("metadata", "deletionTimestamp"),
        ("metadata", "managedFields"),
    }
)
_MISSING = object()


class Conflict(Exception):
    """An apply without force would change fields other managers own."""

    def __init__(self, conflicts: Iterable[tuple[str, Path]]) -> None:
        self.conflicts = sorted(set(conflicts))
        listed = "; ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in self.conflicts)
        super().__init__(f"Apply failed with {len(self.conflicts)} conflict(s): {listed}")


@dataclass
class Entry:
    """One ``metadata.managedFields`` entry."""

    manager: str
    operation: str
    subresource: str | None
    api_version: str
    time: str
    fields: frozenset[Path]

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaves(obj: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Every field as path -> value; maps are walked into, anything else is one field."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        path = (*prefix, key)
        if path in UNOWNED:
            continue
        if isinstance(value, Mapping):
            out.update(leaves(value, path))  # an empty map is no field: the server omits it
        else:
            out[path] = value
    return out


def overlaps(a: Path, b: Path) -> bool:
    """One field contains the other (or they are the same)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def parse_fields_v1(tree: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in tree.items():
        if not key.startswith("f:"):
            continue  # "." and the associative-list keys the emulator never writes
        path = (*prefix, key[2:])
        out |= parse_fields_v1(sub, path) if sub else {path}
    return out


def entries(obj: Mapping[str, Any]) -> list[Entry]:
    return [
        Entry(
            manager=e["manager"],
            operation=e["operation"],
            subresource=e.get("subresource"),
            api_version=e.get("apiVersion", ""),
            time=e.get("time", ""),
            fields=frozenset(parse_fields_v1(e.get("fieldsV1") or {})),
        )
        for e in (obj.get("metadata") or {}).get("managedFields") or []
    ]


def lookup(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _merge(base: dict[str, Any], config: Mapping[str, Any]) -> None:
    for key, value in config.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path, config: Mapping[str, Any]) -> None:
    """Delete the field, then the maps left empty by it that the config does not send."""
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth] or lookup(config, path[:depth]) is not _MISSING:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def _with_entries(obj: dict[str, Any], owners: list[Entry]) -> dict[str, Any]:
    kept = [e.to_json() for e in owners if e.fields]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)
    return obj


def apply(live: Mapping[str, Any] | None, config: Mapping[str, Any], *, manager: str, force: bool) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live`` (None: not there yet)."""
    config = {k: v for k, v in config.items() if k != "status"}
    sent = leaves(config)
    if live is None:
        meta = config.get("metadata") or {}
        live = {
            "apiVersion": config["apiVersion"],
            "kind": config["kind"],
            "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
        }
    obj = copy.deepcopy(dict(live))
    owners = entries(obj)
    key = (manager, "Apply", None)
    mine = next((e for e in owners if e.key == key), None)
    others = [e for e in owners if e.key != key]

    taken: list[tuple[str, Path]] = [
        (other.manager, field)
        for other in others
        for field in other.fields
        for path, value in sent.items()
        if overlaps(field, path) and lookup(obj, path) != value
    ]
    if taken and not force:
        raise Conflict(taken)
    for other in others:
        other.fields = frozenset(f for f in other.fields if (other.manager, f) not in taken)

    _merge(obj, config)
    for field in mine.fields if mine else ():
        if any(overlaps(field, path) for path in sent):
            continue
        if any(overlaps(field, f) for other in others for f in other.fields):
            continue
        _remove(obj, field, config)

    fields = frozenset(sent)
    if mine is None:
        mine = Entry(manager, "Apply", None, config["apiVersion"], now(), fields)
        owners.append(mine)
    elif mine.fields != fields:
        mine.fields, mine.time = fields, now()
    return _with_entries(obj, owners)


def update(
    live: Mapping[str, Any], patch: Mapping[str, Any], *, manager: str, subresource: str | None
) -> list[dict[str, Any]] | None:
    """The ``managedFields`` after ``manager`` merge-patches ``live`` (None: no owners left).

    ``managedFields: [{}]`` in the patch forgets every owner first; the rest
    of the patch is then recorded as usual.
    """
    meta = dict(patch.get("metadata") or {})
    if meta.get("managedFields") == [{}]:
        del meta["managedFields"]
        patch = {**patch, "metadata": meta}
        live = {**live, "metadata": {k: v for k, v in live["metadata"].items() if k != "managedFields"}}
    new = record_update(live, merge_patch(live, patch), manager=manager, subresource=subresource)
    managed: list[dict[str, Any]] | None = new["metadata"].get("managedFields")
    return managed


def record_update(
    old: Mapping[str, Any], new: dict[str, Any], *, manager: str, subresource: str | None
) -> dict[str, Any]:
    """``new`` with ownership moved to ``manager`` for every field it changed from ``old``."""
    owners = entries(old)
    before, after = leaves(old), leaves(new)
    changed = {p for p, v in after.items() if before.get(p, _MISSING) != v}
    gone = {p for p in before if p not in after}
    if not changed and not gone:
        return _with_entries(new, owners)
    key = (manager, "Update", subresource)
    for entry in owners:
        entry.fields = frozenset(f for f in entry.fields if not any(overlaps(f, p) for p in changed | gone))
    mine = next((e for e in owners if e.key == key), None)
    if mine is None:
        mine = Entry(manager, "Update", subresource, str(new.get("apiVersion", "")), now(), frozenset())
        owners.append(mine)
    mine.fields, mine.time = mine.fields | changed, now()
    return _with_entries(new, owners)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as kmock applies a dict patch: to predict what a write will store."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
