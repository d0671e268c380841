"""`interp toy corpus|train`: regenerate the embedded corpus and tokenizer, train the embedded model suites."""

from __future__ import annotations

from interp.errors import ConfigError

USAGE = "interp toy corpus [options] | interp toy train [options]   (add --help after either for options)"


def toy_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "corpus":
        from interp.toy.build import main
    elif cmd == "train":
        from interp.toy.train import main
    else:
        raise ConfigError(f"unknown toy command '{cmd}'", hint=USAGE)
    main(rest)
    return 0
