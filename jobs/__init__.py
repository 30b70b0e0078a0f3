"""Thin jobs: parse arguments, load config, get Spark, call the library, write, log."""
