"""The instruction side (Sec. 3.1): the instruction bank, the embedding cache, fine-tuning the
encoder, the link from a checkpoint to its encoder, the accuracy report."""
