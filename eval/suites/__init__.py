"""Shipped with the empo package as data (pyproject.toml maps this folder; see empo/resources.py)."""
