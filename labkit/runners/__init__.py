"""labkit.runners.local."""
