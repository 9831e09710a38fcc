"""The default prompt sets and templates, installed as the package data of ``steer._prompts`` (see
``steer.resources.PROMPTS_DIR``; pyproject.toml maps this folder into the package)."""
