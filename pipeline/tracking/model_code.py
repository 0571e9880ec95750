"""The delivered model's code, logged with it as MLflow's "model from code": MLflow copies this
file into the model and runs it to load the model, so no class of this project is pickled,
and a stored model outlives a reorganisation of the package. It needs only the package's
public names (:class:`pipeline.core.Preprocessing`, :func:`pipeline.core.load_network`);
the preprocessing's pickle holds scikit-learn's classes alone.

``predict(frame)`` takes the user's raw rows (the table's columns by name; others are ignored,
an absent column with gaps is missing everywhere) and answers in the target's labels or
units; with ``params={"predict_method": "predict_proba"}`` a classifier answers with a frame
of probabilities, a column a class.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

NETWORK, PREPROCESSING = "network", "preprocessing"  # the model's artifacts
PREDICT, PREDICT_PROBA = "predict", "predict_proba"


class NetworkModel(PythonModel):
    """The network (or ensemble) after its data set's preprocessing."""

    def load_context(self, context):
        from pipeline.core import Preprocessing, load_network

        self.network = load_network(context.artifacts[NETWORK])
        self.preprocessing = Preprocessing.load(context.artifacts[PREPROCESSING])

    # no hints on the inputs: MLflow would read them as a schema of its own (the signature is one)
    def predict(self, context, model_input, params=None):
        method = (params or {}).get("predict_method", PREDICT)
        X = self.preprocessing.inputs(pd.DataFrame(model_input))
        if method == PREDICT_PROBA:
            if not self.preprocessing.classes:
                raise ValueError("predict_method 'predict_proba' is for classifiers")
            labels = [str(c) for c in self.preprocessing.classes]
            return pd.DataFrame(self.network.predict_proba(X), columns=labels)
        if method != PREDICT:
            raise ValueError(f"predict_method {method!r}: 'predict' or 'predict_proba'")
        return self.preprocessing.outputs(self.network.predict(X))


mlflow.models.set_model(NetworkModel())
