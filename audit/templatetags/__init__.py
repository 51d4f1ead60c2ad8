"""Template tags and filters of the audit app."""
