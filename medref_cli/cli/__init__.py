"""The command line: one module per command (group), joined in main.py; glue only.

May import: every room (each command imports its library function inside the command, so that `medref --help` stays light); nothing imports cli but __main__.
"""
