"""Write a StreamCluster's status as a read-modify-write the API server checks.

Three writers share ``.status``: the reconciler, the broker Deployment watcher
and the rebalance loop. Each derives its write from the status it last read,
and a JSON merge patch replaces lists whole, so a write based on a stale read
puts the stale conditions back. Against a real API server that happened: the
watcher read a ``Degraded`` StreamCluster, the reconciler then reported the
fixed Secret (``Degraded`` false, a bootstrap address), and the watcher's
write, computed from the old read, restored ``Degraded`` with nothing left
to retrigger a reconcile.

So every status write carries the ``metadata.resourceVersion`` it was
computed from. The API server refuses it with 409 Conflict if anything wrote
the object since; :func:`update` then reads again and recomputes. Whatever
lands last was therefore computed from the newest status. Callers read what
else they fold in (the Deployment) inside ``compute``, after the
StreamCluster, so that part is at least as new as the status it joins.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from floe_operator import kube as kube_
from floe_operator import spec as spec_

logger = logging.getLogger(__name__)

# The status merge patch to write, or None for "nothing to change".
Compute = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]

ATTEMPTS = 10


class StatusConflict(Exception):
    """Every attempt met a newer write; the caller's retry (or the next event) tries again."""


async def update(kube: kube_.KubeClient, namespace: str, name: str, compute: Compute, *,
                 kind: str = spec_.KIND) -> dict[str, Any] | None:
    """Read the StreamCluster (or another floe.dev ``kind``), ``compute`` its status patch, write it if
    nobody wrote in between.

    Returns the object as written (or as read, when ``compute`` had nothing
    to change); None if the object is gone or being deleted.
    """
    for _ in range(ATTEMPTS):
        live = await kube.get(spec_.API_VERSION, kind, namespace, name)
        if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
            return None
        patch = await compute(live)
        if patch is None:
            return live
        version = (live.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "status": patch}
        try:
            return await kube.patch(spec_.API_VERSION, kind, namespace, name, body, subresource="status")
        except kube_.KubeError as exc:
            if exc.status != 409:
                raise
            logger.debug("Status of %s/%s changed under us; reading it again", namespace, name)
    raise StatusConflict(f"status of {namespace}/{name} kept changing; {ATTEMPTS} writes in a row were stale")
