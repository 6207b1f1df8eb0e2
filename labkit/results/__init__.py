"""labkit.results.folder."""
