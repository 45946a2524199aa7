"""Typed configuration models and YAML loading whose errors name file, line, key and fix."""
