"""Operations: what a deployment is (`/version`) and whether it is fit to run (`preflight`)."""
