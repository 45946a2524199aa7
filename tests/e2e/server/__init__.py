"""End-to-end tests of `corral server`: real server processes, real clients, real NGINX."""
