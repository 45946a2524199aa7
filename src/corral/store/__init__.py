"""Revisioned key/value store with watch (etcd-shaped): sqlite, memory, later etcd."""
