"""pipeline-service's domain: plain classes and functions, no framework and no I/O."""
