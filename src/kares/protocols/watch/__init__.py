"""The kids'-watch text protocol: its frames (``frames``) and the TCP listener
that turns them into the location, SOS and device domains' actions (``server``)."""
