"""The runtime every app shares: flags, strategy, precision, callbacks, the fit loop and its outputs."""
