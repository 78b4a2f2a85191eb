"""`tinyres`: the command line client of the tinyres API (see cli/main.py)."""
