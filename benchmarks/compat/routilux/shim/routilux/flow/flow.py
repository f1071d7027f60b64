import runtime

Flow = runtime.Flow
