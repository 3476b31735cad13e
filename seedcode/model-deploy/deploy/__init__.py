"""Deploys the project's approved model to a staging and a production endpoint."""
