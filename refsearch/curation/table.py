"""The per-image facts curation needs, as numpy columns read in one pass over the record store.

A million records as ImageRecord objects would take gigabytes; as columns they take about 60 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import classes
from ..store import RecordStore


@dataclass(frozen=True)
class RecordTable:
    ids: np.ndarray  # int64, ascending
    digests: np.ndarray  # bytes (S32): blake2b of the file, b"" when unknown
    labels: np.ndarray  # int16 class index of the stored label
    predictions: np.ndarray  # int16 class index of the network's prediction
    confidences: np.ndarray  # float32 probability of the prediction
    predicted_labels: np.ndarray  # bool: the label is the prediction (no folder or file name gave one)
    pixels: np.ndarray  # int64 width * height
    file_sizes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def read(cls, store: RecordStore) -> RecordTable:
        count = len(store)
        columns = {"ids": np.empty(count, np.int64), "digests": np.empty(count, "S32"),
                   "labels": np.empty(count, np.int16), "predictions": np.empty(count, np.int16),
                   "confidences": np.empty(count, np.float32), "predicted_labels": np.empty(count, bool),
                   "pixels": np.empty(count, np.int64), "file_sizes": np.empty(count, np.int64)}
        for row, record in enumerate(store.records()):
            columns["ids"][row] = record.id
            columns["digests"][row] = record.digest.encode()
            columns["labels"][row] = classes.class_index(record.label)
            columns["predictions"][row] = classes.class_index(record.prediction)
            columns["confidences"][row] = record.confidence
            columns["predicted_labels"][row] = record.label_source == "predicted"
            columns["pixels"][row] = record.width * record.height
            columns["file_sizes"][row] = record.file_size
        return cls(**columns)
