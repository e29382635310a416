"""Async orchestration: read the world, call the pure builders, apply, report.

``cluster`` brings one StreamCluster's objects in line with its spec;
``status`` computes what to report (pure). Waiting is expressed by raising
``kopf.TemporaryError(delay=...)``, never by sleeping in a handler.
"""
