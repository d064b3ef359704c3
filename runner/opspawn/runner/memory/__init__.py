"""Long-term memory: facts that outlive a task, kept per namespace in Weaviate.

`store` says what a memory is and what a store does, `weaviate_store` is the store,
`embedding` (with `wordllama_embedder` and `provider_embedders`) turns text into vectors,
`longterm` is one task's view of its namespace's memories (with the `memory` events),
`tools` the `remember` and `recall` tools, and `session` opens all of it for an attempt.
"""
