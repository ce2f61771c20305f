"""The HTTP layer of the ranking service (FastAPI). Route functions translate HTTP to
calls of service.engine.RankingEngine and back; nothing else lives here, but
``launcher``, which starts ``recommender serve`` as a child process for tests and benchmarks."""
