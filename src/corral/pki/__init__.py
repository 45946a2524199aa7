"""Certificates: CA and issuing, PEM parsing, chain order, SAN and key checks."""
