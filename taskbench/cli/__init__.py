"""The command line: one parser, one function per command, and its generated reference."""
