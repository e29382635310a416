"""Kafka transactions: the transaction coordinator's state machine and the coordinator that persists it.

``state`` is pure (no I/O, no clocks); ``coordinator`` keeps one shard per led
``__transaction_state`` partition and writes every state change through its
journal before answering. Neither imports the log, the cluster or groups:
``txn_journal`` joins them (docs/architecture.md#transactions).
"""
