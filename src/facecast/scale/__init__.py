"""Scaling past one process: model pools on Ray Serve (the ``scale`` extra; docs/scaling.md).

Importable without Ray: :mod:`facecast.scale.ray_pools` imports it only when a pool is built.
"""
