"""The commands: argument parsing, messages and exit codes over the library beneath.

Nothing in the library imports from here. Exit codes: 0 done, 1 partly failed (some inputs
could not be used; their rows say why), 2 usage or configuration error.
"""
