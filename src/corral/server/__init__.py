"""The management server: listeners, certificates, v3 API, events, shell, audit log."""
