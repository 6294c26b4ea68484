"""One module per application: its typed config and its Task (mnist, classifier, dqn,
segmentation, dcgan, captioning, detection, style_transfer). Beside them: base (the Task the
runner runs), classification (what the two image classifiers share) and runs (a finished run
read back: its Task found by name here, its checkpoint re-exported)."""
