"""Network definitions only (no I/O beyond state-dict loading helpers)."""
