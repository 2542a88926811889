"""`python -m pxtserve ...`: the `pxtserve` console script without its script."""

from pxtserve.cli import main

if __name__ == "__main__":
    main(prog="python -m pxtserve")
