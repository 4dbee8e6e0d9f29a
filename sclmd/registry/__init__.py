"""The MLflow model registry: register a trained pipeline, promote it through gates, roll back.

`pyfunc` is the registered model itself; `versions` registers, compares and moves aliases.
"""
