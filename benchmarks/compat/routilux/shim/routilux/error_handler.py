import runtime

ErrorHandler = runtime.ErrorHandler
ErrorStrategy = runtime.ErrorStrategy
