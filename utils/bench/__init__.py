"""bench.py's measurements: latency, memory and training-throughput workers, the correctness
checks, the profile, and the official network's loader for side-by-side runs."""
