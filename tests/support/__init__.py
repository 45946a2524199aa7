"""Shared test helpers: free ports, waiting on conditions, processes the test owns."""
