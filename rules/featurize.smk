# featurize stage: filled in by its issue
