"""Adds TinyBreaker's launch flag. Runs before the host parses its arguments; imports nothing of ours."""


def preload(parser):
    parser.add_argument("--tinybreaker-dir", type=str, default=None,
                        help="folder with TinyBreaker checkpoints and T5 files (default: models/TinyBreaker)")
