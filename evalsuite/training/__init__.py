"""Reproducible training of evalsuite's embedded models (run as scripts, never at import)."""
