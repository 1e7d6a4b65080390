"""Visionality: every outbound LLM call reconciled to person x project x task x tokens."""

__version__ = "0.1.0"
