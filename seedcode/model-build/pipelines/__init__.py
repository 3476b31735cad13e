"""Model build pipelines of this SageMaker project."""
