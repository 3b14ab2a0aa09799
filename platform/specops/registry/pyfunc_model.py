"""MLflow "model from code" entry: saved with each pair version, executed by ``mlflow.pyfunc.load_model``.

Keeps registered versions free of pickles: the model is rebuilt from ``specops`` at load time.
"""

import mlflow.models

from specops.registry.pyfunc import SpeculativePairModel

mlflow.models.set_model(SpeculativePairModel())
