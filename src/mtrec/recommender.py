"""The registered model's code (an MLflow "model from code").

``mlflow.pyfunc.log_model(python_model=<this file>)`` stores this file with each version and
runs it to build the model when the version is loaded: the class comes from the installed
``mtrec`` package, the weights are tensors (``mtrec.serving``). Nothing is unpickled.
"""

from mlflow.models import set_model

from mtrec.serving import TopKRecommender

set_model(TopKRecommender())
