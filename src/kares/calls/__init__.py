"""Voice calls (policy 1.6.1: microphone, phone calls): the signalling of a call
between two people who share a family, its record (who, when, how long; never
the audio) and TURN credentials. The media flow between the two devices
(WebRTC); the server only sets the call up."""
