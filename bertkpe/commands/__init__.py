"""The `bertkpe` sub-commands: each module parses its flags and calls the library."""
