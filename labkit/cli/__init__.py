"""labkit.cli.main."""
