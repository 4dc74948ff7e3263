"""Anonymised usage statistics (policy 1.6): k-anonymity and OpenDP noise."""
