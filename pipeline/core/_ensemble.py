"""Networks of one configuration trained from different seeds, their outputs averaged: the class
probabilities of a classifier, the predictions of a regressor. Averaging networks that differ
only in their random start removes the variance the seed adds (on new data it is often the
largest part of a small network's error); it predicts like one :class:`MLP`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core._activations import output_metrics
from pipeline.core._network import MLP

MEMBERS = "members"  # the key of the member count in a saved ensemble


class Ensemble:
    """The average of fitted networks of one task (and, for classification, one set of
    classes): ``predict``, ``predict_proba``, ``evaluate``, ``save`` and ``load`` as an MLP's."""

    def __init__(self, members: Sequence[MLP]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one network")
        first = members[0]
        for m in members[1:]:
            same_shape = [W.shape for W in (m.weights_[0], m.weights_[-1])] == [
                W.shape for W in (first.weights_[0], first.weights_[-1])
            ]
            same_classes = m.task == first.task and (
                m.task == "regression" or np.array_equal(m.classes_, first.classes_)
            )
            if not same_classes or not same_shape:
                raise ValueError("an ensemble's networks must share their task, inputs and classes")
        self.members = list(members)
        self.task = first.task
        self.hidden = first.hidden
        if self.task == "classification":
            self.classes_ = first.classes_

    def _outputs(self, X: Any) -> np.ndarray:
        return np.mean([m._outputs(X, None) for m in self.members], axis=0)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.task != "classification":
            raise ValueError("predict_proba needs task='classification'")
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (of the averaged probabilities) or averaged predictions, as
        :meth:`MLP.predict`."""
        out = self._outputs(X)
        if self.task == "classification":
            return self.classes_[out.argmax(axis=1)]
        return out[:, 0] if out.shape[1] == 1 else out

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Data loss (and accuracy) of the averaged outputs on ``X, y``."""
        first = self.members[0]
        out = self._outputs(X)
        return output_metrics(self.task, out, first._encode(first._validate_y(y, out.shape[0])))

    def get_params(self) -> dict[str, Any]:
        """The members' hyperparameters (the first's seed) and their number."""
        return {**self.members[0].get_params(), MEMBERS: len(self.members)}

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file holding each member as :meth:`MLP.save` writes it."""
        arrays: dict[str, Any] = {MEMBERS: np.array(len(self.members))}
        for i, m in enumerate(self.members):
            buffer = io.BytesIO()
            m.save(buffer)
            arrays[f"member{i}"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Ensemble:
        with np.load(path, allow_pickle=False) as f:
            count = int(f[MEMBERS])
            return cls([MLP.load(io.BytesIO(f[f"member{i}"].tobytes())) for i in range(count)])


def load_network(path: str | Path) -> MLP | Ensemble:
    """A network saved by :meth:`MLP.save` or an ensemble saved by :meth:`Ensemble.save`."""
    with np.load(path, allow_pickle=False) as f:
        is_ensemble = MEMBERS in f.files
    return Ensemble.load(path) if is_ensemble else MLP.load(path)
