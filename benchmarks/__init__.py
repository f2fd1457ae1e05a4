"""Benchmarks of pyramid_redis_sessions against its peers; see README.rst."""
