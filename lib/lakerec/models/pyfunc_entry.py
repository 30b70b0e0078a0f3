"""MLflow "models from code" entry: registry.log_model stores this file with each version; MLflow runs it on load."""
import mlflow

from lakerec.models.registry import SequencePyfunc

mlflow.models.set_model(SequencePyfunc())
