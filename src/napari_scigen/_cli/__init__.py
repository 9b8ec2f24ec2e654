"""CLI subcommands. Each module exposes ``register(subparsers)`` which adds one or
more sub-parsers whose ``func`` default is called with the parsed arguments and
returns an exit code."""
