"""Privacy: legal holds, retention, personal-data erasure, and the privacy page."""
