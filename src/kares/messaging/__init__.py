"""Messaging: family and direct conversations, messages, positions (docs/MESSAGING.md)."""
