"""Data: sources on any storage, real built-in datasets, tokenizers, preprocessing and fast loaders.

    from sora.data import DataConfig, prepare_data
    data = prepare_data(DataConfig(dataset="rotten_tomatoes"))
    for batch in data.loader("train", 32, shuffle=True, epoch=0): ...

Layout: ``config`` (the ``data:`` section), ``sources`` (fsspec), ``formats`` (readers) and ``read``
(a source into ``table``s), ``builtin/`` (the built-in datasets) and ``cache``, ``tokenizer``,
``audio`` (features), ``splits``, ``datasets`` (examples to padded batches), ``loader`` (bucketing,
sharding, workers), ``stream`` (shards larger than memory), ``prepare`` (all of it, in order),
``preprocess`` (the same image/audio inputs at inference).
"""

from sora.data import builtin, cache
from sora.data.config import (AugmentConfig, DataConfig, NormalizeConfig, SplitConfig, TokenizerConfig,
                              read_data_config)
from sora.data.prepare import Prepared, UnseenLabelsWarning, prepare_data
from sora.data.stream import StreamingData, train_stream_tokenizer
from sora.data.table import SkippedRowsWarning

__all__ = ["AugmentConfig", "DataConfig", "NormalizeConfig", "Prepared", "SkippedRowsWarning", "SplitConfig",
           "StreamingData", "TokenizerConfig", "UnseenLabelsWarning", "builtin", "cache", "prepare_data",
           "read_data_config", "train_stream_tokenizer"]
