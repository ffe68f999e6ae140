"""The Widget API: what a website visitor's browser calls, and its defences."""
