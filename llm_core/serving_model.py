"""The file MLflow logs as the registered model's code (MLflow's "models from code": the model
is this file, not a pickled object)."""

import mlflow

from llm_core.serving import TextGenerator

mlflow.models.set_model(TextGenerator())
