"""Loaded by MLflow ("models from code"): the registered model is this code, not a pickle."""

from mlflow.models import set_model

from sclmd.registry.pyfunc import SpeechToFaceModel

set_model(SpeechToFaceModel())
