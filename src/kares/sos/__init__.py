"""SOS alerts: a person (or their watch) asks for help; every guardian is told at
once through every channel, and the alert stays open until one answers."""
