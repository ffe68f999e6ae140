"""Calls: WebRTC signalling relayed over the event stream, call state, TURN credentials."""
