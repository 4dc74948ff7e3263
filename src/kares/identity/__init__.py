"""Identity: the account, its sessions, the codes that prove a phone, and who a
caller is on any connection. Below the privacy core; knows no feature."""
