"""The benchmark protocol (Sec. 4.2): the test sets, the evaluation loop, the paper's
numbers, the result files and tables, the before/after figure, and the degradation classifier's accuracy."""
