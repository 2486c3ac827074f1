"""`python -m photoman` runs the CLI."""

from photoman.cli import main

main()
