"""Families (circles): members and their roles, invitations by code and QR,
per-member sharing choices, and dependants managed by a guardian."""
