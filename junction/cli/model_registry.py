"""``junction model`` commands (see junction.cli.model)."""
