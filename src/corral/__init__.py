"""Corral: a TLS-secured management server behind a Layer-7 load balancer."""

__version__ = "0.1.0"
