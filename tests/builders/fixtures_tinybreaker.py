"""A session-wide folder of tiny TinyBreaker files (checkpoints p0/p1, fp8 T5, tokenizers)."""

import pytest

from builders.tinybreaker_files import write_tiny_model_folder


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinybreaker_models")
    paths = write_tiny_model_folder(folder, prototypes=(1, 0))
    return folder, paths
