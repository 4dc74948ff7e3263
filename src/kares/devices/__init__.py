"""Devices: the phones, tablets, watches and browsers an account uses, and the
OS permission states each one reports (policy 1.6.1). Step 3 adds watches,
push tokens, battery and pairing."""
