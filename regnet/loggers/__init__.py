"""Metric loggers (``conf/logger/``)."""
