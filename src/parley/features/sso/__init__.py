"""Single sign-on: OpenID Connect providers (docs/sso.md)."""
