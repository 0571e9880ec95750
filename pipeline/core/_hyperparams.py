"""The network's hyperparameters, declared once (nanoGPT's ``GPTConfig``).

:class:`Hyperparams` is the dataclass :class:`~pipeline.core.MLP` inherits its constructor from:
each field carries its default, what it may be (a :class:`Constraint`), one line of docs and,
for a regulariser, the value that turns it off. The signature, the model's validation, the sweep
files' checks and defaults, the baselines' "off" values and the docs' reference all read this
table, so adding a hyperparameter is one field here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from pipeline.core._activations import ACTIVATIONS, TASKS
from pipeline.core._constraints import (
    BOOLEAN,
    LAYER_SIZES,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    UNIT_INTERVAL,
    Constraint,
    one_of,
    or_none,
)
from pipeline.core._optimizers import OPTIMIZERS

DTYPES = ("float64", "float32")
INITS = ("he", "glorot")
PATIENCE = Constraint(
    "an integer >= 0, or None (0 and None: off)", lambda v: v is None or SEED.test(v)
)


def hyperparameter(
    default: Any, constraint: Constraint, doc: str, off: Any = MISSING, label: str = ""
) -> Any:
    """A field of :class:`Hyperparams`. For a regulariser, ``off`` is the value that turns it
    off as a sweep file writes it (``0`` where the network takes ``None``) and ``label`` its
    name in prose ("dropout" for keep_prob)."""
    metadata: dict[str, Any] = {"constraint": constraint, "doc": doc}
    if off is not MISSING:
        metadata |= {"off": off, "label": label}
    return field(default=default, metadata=metadata)


@dataclass(eq=False)
class Hyperparams:
    """The hyperparameters of :class:`~pipeline.core.MLP`; see each field's ``doc``."""

    hidden: Sequence[int] = hyperparameter(
        (64, 64), LAYER_SIZES, "sizes of the hidden layers, e.g. (64, 64)"
    )
    activation: str = hyperparameter(
        "relu", one_of(ACTIVATIONS), "hidden activation: relu, tanh or sigmoid"
    )
    init: str = hyperparameter(
        "he",
        one_of(INITS),
        "initial weights: he (the seed's, normal with sd sqrt(2 / fan_in), LeCun's sqrt(1 / "
        "fan_in) for tanh and sigmoid; biases 0) or glorot (scikit-learn's MLP's: weights and "
        "biases uniform within sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for sigmoid)",
    )
    task: str = hyperparameter(
        "regression",
        one_of(TASKS),
        "regression (mean squared error) or classification (softmax cross-entropy)",
    )
    keep_prob: float = hyperparameter(
        1.0,
        PROBABILITY,
        "probability of KEEPING a hidden unit in inverted dropout (PyTorch and Keras take the "
        "drop rate 1 - keep_prob); 1 turns dropout off",
        off=1.0,
        label="dropout",
    )
    input_keep_prob: float = hyperparameter(
        1.0,
        PROBABILITY,
        "the same as keep_prob for the input features",
        off=1.0,
        label="input dropout",
    )
    connect_keep_prob: float = hyperparameter(
        1.0,
        PROBABILITY,
        "DropConnect (Wan et al. 2013): probability of keeping each WEIGHT, one mask per weight "
        "matrix and mini-batch, scaled by 1 / connect_keep_prob so that inference uses the "
        "weights as they are; 1 turns it off",
        off=1.0,
        label="DropConnect",
    )
    input_noise: float = hyperparameter(
        0.0,
        NON_NEGATIVE,
        "data augmentation: Gaussian noise added to the inputs of every training batch, with "
        "this standard deviation in units of each feature's standard deviation; 0 turns it off",
        off=0.0,
        label="input noise",
    )
    mixup_alpha: float = hyperparameter(
        0.0,
        NON_NEGATIVE,
        "mixup (Zhang et al. 2018): each batch becomes lam * batch + (1 - lam) * shuffled batch, "
        "inputs and targets alike, lam ~ Beta(alpha, alpha); 0 turns it off",
        off=0.0,
        label="mixup",
    )
    batch_norm: bool = hyperparameter(
        False,
        BOOLEAN,
        "batch normalisation (Ioffe & Szegedy 2015) of every hidden layer, between the affine "
        "map and the activation; running statistics at inference",
        off=False,
        label="batch norm",
    )
    bn_momentum: float = hyperparameter(
        0.1,
        PROBABILITY,
        "running = (1 - bn_momentum) * running + bn_momentum * batch (PyTorch's convention)",
    )
    bn_eps: float = hyperparameter(1e-5, POSITIVE, "added to the variance in batch norm")
    weight_decay: float = hyperparameter(
        0.0,
        NON_NEGATIVE,
        "L2 strength: dW += weight_decay * W (penalty wd/2 ||W||^2, biases not decayed); "
        "decoupled from the gradient with optimizer = adamw",
        off=0.0,
        label="weight decay",
    )
    l1: float = hyperparameter(
        0.0,
        NON_NEGATIVE,
        "L1 strength, applied by a proximal soft-threshold after each update (exact zeros)",
        off=0.0,
        label="L1",
    )
    patience: int | None = hyperparameter(
        None,
        PATIENCE,
        "early stopping: stop after this many epochs without an improvement of the validation "
        "loss and restore the best weights; None or 0 turns it off",
        off=0,
        label="early stopping",
    )
    max_norm: float | None = hyperparameter(
        None,
        or_none(POSITIVE),
        "each unit's incoming weight vector rescaled to norm <= max_norm after every update "
        "(Srivastava et al. 2014); None (0 in a sweep file) turns it off",
        off=0,
        label="max-norm",
    )
    min_delta: float = hyperparameter(
        0.0, NON_NEGATIVE, "an improvement means val_loss < best - min_delta"
    )
    optimizer: str = hyperparameter(
        "sgd",
        one_of(OPTIMIZERS),
        "sgd, momentum (heavy ball), adam, or adamw (weight decay decoupled)",
    )
    lr: float = hyperparameter(0.01, POSITIVE, "learning rate")
    momentum: float = hyperparameter(0.9, UNIT_INTERVAL, "heavy ball's coefficient")
    beta1: float = hyperparameter(0.9, UNIT_INTERVAL, "Adam's first-moment decay")
    beta2: float = hyperparameter(0.999, UNIT_INTERVAL, "Adam's second-moment decay")
    eps: float = hyperparameter(1e-8, POSITIVE, "Adam's denominator guard")
    max_epochs: int = hyperparameter(500, POSITIVE_INT, "passes over the training data at most")
    batch_size: int | None = hyperparameter(
        None,
        or_none(POSITIVE_INT),
        "None (0 in a sweep file) for full-batch gradient descent, else mini-batches drawn "
        "from a shuffled order each epoch",
    )
    seed: int = hyperparameter(
        0,
        SEED,
        "seeds every random draw (initial weights, dropout masks, batch order); 42 gives the "
        "seed chapter's initial weights",
    )
    noise_seed: int | None = hyperparameter(
        None,
        or_none(SEED),
        "seeds the dropout masks and batch order apart from the initial weights (None: seed)",
    )
    dtype: str = hyperparameter(
        "float64", one_of(DTYPES), "float64, or float32 (faster, for sweeps)"
    )

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, by name (scikit-learn's ``get_params``)."""
        return {f.name: getattr(self, f.name) for f in HYPERPARAMETERS}

    def _validate_params(self) -> None:
        for name, value in self.get_params().items():
            check_param(name, value)


HYPERPARAMETERS: tuple[Field[Any], ...] = fields(Hyperparams)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in HYPERPARAMETERS}
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    f.name: f.metadata["constraint"] for f in HYPERPARAMETERS
}
# The regularisers of the chapter and their relatives, with the value that turns each off, as a
# sweep file writes it (``max_norm = 0`` and ``patience = 0`` are "off" in a sweep file).
REGULARISERS_OFF: dict[str, Any] = {
    f.name: f.metadata["off"] for f in HYPERPARAMETERS if "off" in f.metadata
}
REGULARISER_LABELS: dict[str, str] = {
    f.name: f.metadata["label"] for f in HYPERPARAMETERS if "off" in f.metadata
}


def check_param(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and what is allowed, unless allowed."""
    PARAMETER_CONSTRAINTS[name].check(name, value)
