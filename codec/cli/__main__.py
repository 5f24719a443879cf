"""`python -m codec.cli` (torchrun runs the commands this way)."""

from codec.cli import main

main()
