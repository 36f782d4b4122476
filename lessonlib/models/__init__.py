"""The course's working PyTorch models, trained on its own synthetic language.

corpus      the synthetic multi-task language (no download)
tinygpt     the small decoder-only transformer and its cached inference path
attention   attention written once per variant: multi-head, grouped-query, multi-query, window, latent
kv_cache    the KV cache, a store per layer that owns its layout (full, rolling window, latent)
moe         a top-k mixture-of-experts layer: routing, load-balancing loss, capacity, expert usage
pruning     magnitude, N:M and structured pruning, mask-respecting fine-tuning, sparse-format sizes
conversion  a trained multi-head model pooled into grouped-query attention
decoding    greedy, sampled and speculative decoding
cascade     confidence cascades: who answers, at what cost, the frontier and the threshold to use
early_exit  exit heads on intermediate layers and decoding that stops at the first confident one
training    a small reproducible training loop
evaluation  validation loss, answer loss and exact-match accuracy
checkpoints saving, loading and the shipped tiny models
cost_spec   a TinyGPT as a cost-model ModelSpec
"""
