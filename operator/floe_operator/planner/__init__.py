"""Pure partition planning: which leaders to move (``balancer``) and when (``policy``).

Nothing here imports kopf, a Kubernetes client, aiohttp or asyncio (an
import-linter contract checks it), so the local autoscaler and the kopf loop
share exactly the same decisions and the tests need no cluster.
"""

from __future__ import annotations

from floe_operator.planner.balancer import BrokerInfo, Move, PartitionInfo, plan, skew_percent
from floe_operator.planner.policy import RebalancePolicy

__all__ = ["BrokerInfo", "Move", "PartitionInfo", "RebalancePolicy", "plan", "skew_percent"]
