"""The difference between two consecutive metadata versions, and applying it.

A commit writes and pushes a :class:`Delta`, not the whole metadata, so what
a change costs follows what it changed, not how many partitions the cluster
has (docs/architecture.md#controller-and-membership):

* **sections** (every field of ``ClusterState`` but the version and the
  topics: brokers, counters, fenced sessions, and any field added later) are
  small; a changed one travels whole, in its snapshot JSON form;
* **topics** are compared by identity (an unchanged topic is the same object
  in both versions, see ``cluster.metadata``), and a changed one travels as
  its attributes plus only the partitions whose leadership changed.

Pure: no I/O. A delta names the version it makes; it applies only on the
version before it (:class:`Gap` otherwise), so a broker that missed one knows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .metadata import ClusterState, PartitionLeader, TopicInfo, sections


class Gap(Exception):
    """A delta that does not follow the version it was given."""


@dataclass
class Delta:
    version: int  # the version this delta makes, from version - 1
    by: str = ""  # the committing controller's session (tells its own write from another's)
    sections: dict[str, Any] = field(default_factory=dict)  # section -> its whole new JSON value
    topics: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: deleted
    # A base marker stands at the version of a snapshot that has no delta of its own (a new
    # cluster, a bucket from before deltas): it is there to be found, never applied.
    base: bool = False

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"version": self.version, "by": self.by, "sections": self.sections,
                               "topics": self.topics}
        if self.base:
            doc["base"] = True
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Delta:
        doc = json.loads(raw)
        return cls(version=int(doc["version"]), by=doc.get("by", ""), sections=doc.get("sections", {}),
                   topics=doc.get("topics", {}), base=bool(doc.get("base", False)))


def diff(old: ClusterState, new: ClusterState, *, by: str = "") -> Delta:
    """What turns ``old`` into ``new`` (``new`` made from ``old.copy()``)."""
    delta = Delta(version=new.version, by=by)
    for s in sections(type(new)):
        before, after = s.dump(getattr(old, s.name)), s.dump(getattr(new, s.name))
        if before != after:
            delta.sections[s.name] = after
    for name in old.topics.keys() - new.topics.keys():
        delta.topics[name] = None
    for name, topic in new.topics.items():
        prior = old.topics.get(name)
        if prior is topic:
            continue
        if prior is None or prior.topic_id != topic.topic_id:
            delta.topics[name] = _topic_doc(topic, range(len(topic.partitions)))
            continue
        before = prior.partitions
        # Unchanged partitions are the very objects of the version before: identity first.
        changed = [i for i, p in enumerate(topic.partitions)
                   if i >= len(before) or (p is not before[i] and p != before[i])]
        if changed or len(topic.partitions) != len(before) or topic.configs != prior.configs \
                or topic.internal != prior.internal:
            delta.topics[name] = _topic_doc(topic, changed)
    return delta


def _topic_doc(topic: TopicInfo, changed: Iterable[int]) -> dict[str, Any]:
    return {"id": topic.topic_id, "internal": topic.internal, "configs": topic.configs,
            "count": len(topic.partitions), "changed": {str(i): topic.partitions[i].to_json() for i in changed}}


def apply(state: ClusterState, delta: Delta) -> ClusterState:
    """The version ``delta`` makes from ``state`` (a new object; ``state`` is left as it was)."""
    if delta.base or delta.version != state.version + 1:
        raise Gap(f"delta {delta.version} does not follow version {state.version}")
    new = state.copy()
    new.version = delta.version
    codecs = {s.name: s for s in sections(type(new))}
    for name, value in delta.sections.items():
        if name in codecs:  # a section this build does not know is skipped, not fatal
            setattr(new, name, codecs[name].load(value))
    for name, doc in delta.topics.items():
        if doc is None:
            new.topics.pop(name, None)
            continue
        prior = new.topics.get(name)
        base = list(prior.partitions) if prior is not None and prior.topic_id == doc["id"] else []
        count = int(doc["count"])
        parts = base[:count] + [PartitionLeader(-1, 0)] * (count - len(base))
        for i, p in doc["changed"].items():
            parts[int(i)] = PartitionLeader(*p)
        new.put_topic(TopicInfo(name=name, topic_id=doc["id"], partitions=parts,
                                configs=dict(doc.get("configs", {})), internal=bool(doc.get("internal", False))))
    return new
