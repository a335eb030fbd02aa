"""The ``infinibay`` command line: parse, delegate, print."""
