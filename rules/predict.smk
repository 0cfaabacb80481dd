# predict stage: filled in by its issue
