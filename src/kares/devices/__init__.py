"""Devices: the phones, tablets, watches and browsers an account uses, the OS
permission states each one reports (policy 1.6.1), and their battery."""
