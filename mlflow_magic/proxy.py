def setup_mlflow():
    return {}
