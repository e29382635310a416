"""The Kafka admin calls behind StreamUsers: SCRAM credentials and ACLs, through confluent-kafka.

confluent-kafka's ``AdminClient`` is blocking (futures resolved by librdkafka's
threads), so every call runs in a worker thread and the kopf event loop never
waits on the network. The operator logs in as its own super user
(``manifests.security.OPERATOR_USER``) on the cluster's first SCRAM listener,
through the bootstrap Service.

:class:`UserAdmin` is the face the reconciler uses; tests inject a fake one
(``memo.user_admin_factory``), as they do for the brokers' admin API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from floe_operator import user_spec

SCRAM_ITERATIONS = 8192
TIMEOUT_SECONDS = 30.0


class KafkaAdminError(Exception):
    """A Kafka admin call failed; ``str()`` is for a person (it never holds a password)."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ACL binding, in the StreamUser's words (``topic``, ``prefixed``, ``Read``, ``allow``)."""

    resource_type: str
    resource_name: str
    pattern_type: str
    principal: str
    host: str
    operation: str
    permission: str


@dataclass(frozen=True)
class Connection:
    """How the operator reaches one cluster's Kafka admin APIs.

    ``mechanism`` None: a listener without SASL (StreamTopics on a cluster
    that has no SCRAM listener); the operator then connects anonymously.
    """

    bootstrap: str
    security_protocol: str
    mechanism: str | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)

    def client_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.mechanism is not None:
            conf.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                         "sasl.password": self.password})
        if self.ca_pem:
            conf["ssl.ca.pem"] = self.ca_pem
        return conf


class UserAdmin(Protocol):
    async def upsert_scram(self, user: str, mechanism: str, password: str) -> None: ...

    async def delete_scram(self, user: str, mechanism: str) -> None:
        """Remove the credential; a credential that does not exist is no error."""

    async def acls_of(self, principal: str) -> set[Acl]: ...

    async def create_acls(self, acls: Iterable[Acl]) -> None: ...

    async def delete_acls(self, acls: Iterable[Acl]) -> None: ...

    async def close(self) -> None: ...


UserAdminFactory = Callable[[Connection], UserAdmin]


def desired_acls(user: user_spec.StreamUser) -> set[Acl]:
    """The spec's rules as bindings: one per operation, as Kafka stores them."""
    if user.spec.authorization is None:
        return set()
    return {
        Acl(rule.resource.type, rule.resource.resource_name, rule.resource.pattern_type, user.principal, rule.host,
            op, rule.type)
        for rule in user.spec.authorization.acls
        for op in rule.operations
    }


class ConfluentUserAdmin:
    """:class:`UserAdmin` on confluent-kafka's AdminClient; one per cluster connection."""

    def __init__(self, connection: Connection) -> None:
        from confluent_kafka.admin import AdminClient  # only the StreamUser path needs librdkafka

        self._client: Any = AdminClient(connection.client_config())

    @staticmethod
    async def _wait(futures: Iterable[Any], what: str, *, ignore: Callable[[Exception], bool] = lambda _: False
                    ) -> list[Any]:
        def resolve() -> list[Any]:
            out = []
            for f in futures:
                try:
                    out.append(f.result(timeout=TIMEOUT_SECONDS))
                except Exception as exc:  # noqa: BLE001 - librdkafka's KafkaException and timeouts alike
                    if not ignore(exc):
                        raise KafkaAdminError(f"{what}: {exc}") from None
            return out

        return await asyncio.to_thread(resolve)

    async def upsert_scram(self, user: str, mechanism: str, password: str) -> None:
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        info = ScramCredentialInfo(getattr(ScramMechanism, mechanism.replace("-", "_")), SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(user, info, password.encode())
        futures = await asyncio.to_thread(self._client.alter_user_scram_credentials, [upsert])
        await self._wait(futures.values(), f"set the {mechanism} credential of {user}")

    async def delete_scram(self, user: str, mechanism: str) -> None:
        from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

        deletion = UserScramCredentialDeletion(user, getattr(ScramMechanism, mechanism.replace("-", "_")))
        futures = await asyncio.to_thread(self._client.alter_user_scram_credentials, [deletion])
        await self._wait(futures.values(), f"delete the {mechanism} credential of {user}",
                         ignore=lambda exc: "RESOURCE_NOT_FOUND" in str(exc) or "not found" in str(exc).lower())

    async def acls_of(self, principal: str) -> set[Acl]:
        from confluent_kafka.admin import (
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,  # type: ignore[arg-type]
                               AclOperation.ANY, AclPermissionType.ANY)
        future = await asyncio.to_thread(self._client.describe_acls, flt)
        (bindings,) = await self._wait([future], f"describe the ACLs of {principal}")
        return {_from_binding(b) for b in bindings}

    async def create_acls(self, acls: Iterable[Acl]) -> None:
        bindings = [_to_binding(a) for a in sorted(acls)]
        if bindings:
            futures = await asyncio.to_thread(self._client.create_acls, bindings)
            await self._wait(futures.values(), "create ACLs")

    async def delete_acls(self, acls: Iterable[Acl]) -> None:
        filters = [_to_binding(a, as_filter=True) for a in sorted(acls)]
        if filters:
            futures = await asyncio.to_thread(self._client.delete_acls, filters)
            await self._wait(futures.values(), "delete ACLs")

    async def close(self) -> None:
        self._client = None


# confluent-kafka's names for the StreamUser's words.
_RESOURCE = {"topic": "TOPIC", "group": "GROUP", "cluster": "BROKER", "transactionalId": "TRANSACTIONAL_ID"}
_OPERATION = {"All": "ALL", "Read": "READ", "Write": "WRITE", "Create": "CREATE", "Delete": "DELETE",
              "Alter": "ALTER", "Describe": "DESCRIBE", "ClusterAction": "CLUSTER_ACTION",
              "DescribeConfigs": "DESCRIBE_CONFIGS", "AlterConfigs": "ALTER_CONFIGS",
              "IdempotentWrite": "IDEMPOTENT_WRITE"}


def _to_binding(acl: Acl, *, as_filter: bool = False) -> Any:
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    cls = AclBindingFilter if as_filter else AclBinding
    return cls(ResourceType[_RESOURCE[acl.resource_type]], acl.resource_name,
               ResourcePatternType[acl.pattern_type.upper()], acl.principal, acl.host,
               AclOperation[_OPERATION[acl.operation]], AclPermissionType[acl.permission.upper()])


def _from_binding(binding: Any) -> Acl:
    resource = {v: k for k, v in _RESOURCE.items()}.get(binding.restype.name, binding.restype.name.lower())
    operation = {v: k for k, v in _OPERATION.items()}.get(binding.operation.name, binding.operation.name)
    return Acl(resource, binding.name, binding.resource_pattern_type.name.lower(), binding.principal, binding.host,
               operation, binding.permission_type.name.lower())
