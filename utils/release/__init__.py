"""Release folders: the weights of a trained checkpoint in a form people can share and load
(safetensors, JSON, the encoder in Hugging Face format, a model card, SHA-256 of every file), read
back wherever a checkpoint is read, fetched from the Hugging Face Hub, and exported to ONNX."""
