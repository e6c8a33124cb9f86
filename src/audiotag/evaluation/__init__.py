"""Evaluation of a trained model on the feature store (stage ``evaluate@<model>``)."""
