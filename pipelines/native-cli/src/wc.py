#!/usr/bin/env python3
"""wc: counts the lines, words and bytes of stdin, as `specs/wc.md` describes.

This is the starting point of the native-cli demo: the coding stage (an
agent) implements the program here.
"""

import sys


def main(argv):
    # To be implemented by the agent: see specs/wc.md.
    print("wc: not implemented", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
