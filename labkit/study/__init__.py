"""labkit.study."""
