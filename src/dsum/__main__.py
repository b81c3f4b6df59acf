"""`python -m dsum ...` (also what `torchrun -m dsum train ...` runs)."""

from dsum.cli import main

main()
