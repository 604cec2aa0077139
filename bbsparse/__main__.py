"""``python -m bbsparse``: the same command as the installed ``bbsparse`` script."""

from bbsparse.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
