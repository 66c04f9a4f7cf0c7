"""Fixtures used by the tests and bench/ (synthetic weights, files and helpers), never by the app."""
