"""The operator console: the web page staff use to answer live-chat conversations."""
