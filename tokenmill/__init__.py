"""tokenmill: raw web crawls in, curated documents and training tokens out."""

__version__ = "0.1.0"
