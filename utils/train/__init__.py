"""The parts of the training loop: the step, the learning-rate schedule, distributed helpers, the
run lock, the speed plan (compile, CUDA graph, precision) and the degradation classifier's training."""
