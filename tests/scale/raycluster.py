"""The pool tests' Ray cluster: :class:`facecast.scale.localcluster.RayCluster` (shared with
``facecast bench --scale``)."""

from facecast.scale.localcluster import RayCluster, free_port

__all__ = ["RayCluster", "free_port"]
