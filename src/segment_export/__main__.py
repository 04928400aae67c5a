"""`python -m segment_export` runs the command line."""

from segment_export.cli import main

main()
