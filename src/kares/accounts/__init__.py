"""Accounts: registration, sign-in, sessions, login environment (policy 1.1, 1.4)."""
