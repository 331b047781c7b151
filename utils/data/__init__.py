"""Training data and image files: the paper's folder layouts and their pairing, the training set and
its sampler, the degradations, image I/O and its pixel limit, the demo-set builder, the data check, the degradation classifier's samples."""
