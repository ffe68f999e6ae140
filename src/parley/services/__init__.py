"""Actions: `access_*` loads and authorizes or raises, `check_*` validates, `do_*` mutates.

Routers and transports call these, never storage directly.
"""
