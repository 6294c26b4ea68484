"""SavedModel export in TF Serving's versioned layout, each kind's serving signatures, and
reduced-precision variants."""
