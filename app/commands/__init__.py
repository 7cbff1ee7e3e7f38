"""Subcommands that run analyses: each module has add_arguments(parser) and run(args)."""
