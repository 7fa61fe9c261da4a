"""Data: sources on any storage, real built-in datasets, tokenizers, preprocessing and fast loaders.

    from sora.data import DataConfig, prepare_data
    data = prepare_data(DataConfig(dataset="rotten_tomatoes"))
    for batch in data.loader("train", 32, shuffle=True, epoch=0): ...

Layout: ``config`` (the ``data:`` section), ``sources`` (fsspec), ``formats`` (readers) and ``read``
(a source into ``table``s), ``builtin/`` (the built-in datasets) and ``cache``, ``tokenizer``,
``audio`` (features), ``splits`` (which rows go to train, validation, test), ``rows`` (checks of
a source's rows), ``encoding`` (texts to ids), ``datasets`` (examples to padded batches), ``loader``
(bucketing, sharding, workers), ``builders`` (one per task: checked rows to splits of examples),
``prepared`` (the ready dataset), ``prepare`` (all of it, in order), ``stream`` (shards larger than
memory), ``preprocess`` (the same image/audio inputs at inference), ``protocol`` (``TaskData``: what
the stages above use of prepared data).
"""

from sora.data import builtin, cache
from sora.data.builders import UnseenLabelsWarning
from sora.data.config import AugmentConfig, DataConfig, NormalizeConfig, SplitConfig, TokenizerConfig, read_data_config
from sora.data.prepare import prepare_data
from sora.data.prepared import Prepared
from sora.data.protocol import TaskData
from sora.data.stream import StreamingData, train_stream_tokenizer
from sora.data.table import SkippedRowsWarning

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "NormalizeConfig",
    "Prepared",
    "SkippedRowsWarning",
    "SplitConfig",
    "StreamingData",
    "TaskData",
    "TokenizerConfig",
    "UnseenLabelsWarning",
    "builtin",
    "cache",
    "prepare_data",
    "read_data_config",
    "train_stream_tokenizer",
]
