"""``python -m imgrag``: the same CLI as the ``imgrag`` console script."""

from imgrag.cli import main

main()
