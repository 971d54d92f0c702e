import logging

# Expected failures (bad batches, failed loads) log tracebacks; keep test output readable.
logging.getLogger("inferq_runner").setLevel(logging.CRITICAL)
