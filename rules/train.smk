# train stage: filled in by its issue
