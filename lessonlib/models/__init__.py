"""The course's working PyTorch models, trained on its own synthetic language.

corpus      the synthetic multi-task language (no download)
tinygpt     the small decoder-only transformer with a preallocated KV cache
moe         a top-k mixture-of-experts layer: routing, load-balancing loss, capacity, expert usage
pruning     magnitude, N:M and structured pruning, mask-respecting fine-tuning, sparse-format sizes
decoding    choosing tokens (greedy, sampling) and the generation loop
training    a small reproducible training loop
evaluation  validation loss, answer loss and exact-match accuracy
checkpoints saving, loading and the shipped tiny models
cost_spec   a TinyGPT as a cost-model ModelSpec
"""
