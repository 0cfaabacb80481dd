# evaluate stage: filled in by its issue
