"""SavedModel export in TF Serving's versioned layout, and reduced-precision variants."""
