"""The runtime every app shares: its configs and flags, strategy, precision, the runner, the
resumable fit and custom loop, and the files a run leaves. It imports no task, model or export
module: a Task brings those."""
