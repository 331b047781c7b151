"""The parts of train.py's run: the step and the run's state, the inputs, the learning-rate schedule and
the time budget, resume and the NaN guard, validation, distributed helpers, the run lock and the folders
a run claims, the speed settings (compile, CUDA graph, precision) and the degradation classifier's
training and stage."""
